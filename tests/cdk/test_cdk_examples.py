"""Every example synthesizes, lints clean, passes cdk-nag, and ships a lean edge bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cdk_support import (
    EDGE_BUNDLE_SIZES,
    EDGE_HANDLER,
    EXAMPLE_NAMES,
    FETCHER_HANDLER,
    USER_FUNCTION,
    VARIANT_NAMES,
    Run,
    Synthesized,
    grants,
    role_statements,
    zipped_size,
)

# Lambda@Edge limit for origin-request/-response functions (viewer triggers: 1 MB).
EDGE_ZIP_LIMIT = 50 * 2**20
# Packages an edge bundle must never carry: the runtime's boto3 is used for the rare enqueue,
# and the fetcher's SDKs have no business at the edge.
NEVER_AT_EDGE = {"boto3", "botocore", "s3transfer", "awscrt", "aws_lambda_powertools", "click"}


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_synthesizes_its_stacks(apps: dict[str, Synthesized], name: str) -> None:
    app = apps[name]
    stacks = {artifact.stack_name for artifact in app.assembly.stacks}
    assert app.stack.stack_name in stacks
    assert app.edge_stack_name in stacks
    app.template().resource_count_is("AWS::CloudFront::Distribution", 1)


def test_app_py_synthesizes_without_the_cdk_cli(synthesized: Run) -> None:
    result = synthesized.app_py
    assert result.returncode == 0, result.stderr[-3000:]
    templates = sorted(p.name for p in synthesized.app_py_outdir.glob("*.template.json"))
    assert "BackoriginGcsPublic.template.json" in templates
    assert any(name.startswith("edge-lambda-stack-") for name in templates)


def test_cfn_lint_reports_no_errors(apps: dict[str, Synthesized]) -> None:
    templates = [str(path) for app in apps.values() for path in app.template_files()]
    assert len(templates) >= len(apps)
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or "cfn-lint"
    # W3005: the CDK writes DependsOn entries that are also implied by references.
    result = subprocess.run(
        [cfn_lint, "-i", "W3005", "--", *templates], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def nag_findings(app: Synthesized, kind: str = "violations") -> list[tuple[str, str]]:
    """``(rule, construct path)`` of every cdk-nag finding (or suppressed finding)."""
    report = app.validation_report()
    assert [plugin["pluginName"] for plugin in report["pluginReports"]] == ["AwsSolutions"]
    return [
        (violation["ruleName"], construct["constructPath"])
        for plugin in report["pluginReports"]
        for violation in plugin.get(kind, [])
        for construct in violation["violatingConstructs"]
    ]


@pytest.mark.parametrize("name", EXAMPLE_NAMES + VARIANT_NAMES)
def test_cdk_nag_aws_solutions_has_no_unacknowledged_findings(
    apps: dict[str, Synthesized], name: str
) -> None:
    app = apps[name]
    user = f"{app.stack.stack_name}/{USER_FUNCTION}/"  # the app's own (see the next test)
    assert [f for f in nag_findings(app) if not f[1].startswith(user)] == []


@pytest.mark.parametrize("name", EXAMPLE_NAMES + VARIANT_NAMES)
def test_each_acknowledgment_has_a_reason_and_covers_only_the_construct(
    apps: dict[str, Synthesized], name: str
) -> None:
    app = apps[name]
    report = app.validation_report()
    (plugin,) = report["pluginReports"]
    suppressed = plugin["suppressedViolations"]
    assert suppressed
    for violation in suppressed:
        assert len(violation["reason"]) > 40, violation["ruleName"]
        assert violation["acknowledgedAt"].startswith(app.construct_paths())
        for construct in violation["violatingConstructs"]:
            assert construct["constructPath"].startswith(app.construct_paths())


def test_acknowledgments_do_not_hide_findings_elsewhere_in_the_app(
    adopted: Synthesized,
) -> None:
    user = f"{adopted.stack.stack_name}/{USER_FUNCTION}/"
    rules = {rule.split("[")[0] for rule, path in nag_findings(adopted) if path.startswith(user)}
    # The construct acknowledges both rules for its own functions, and only for them.
    assert {"AwsSolutions-L1", "AwsSolutions-IAM4"} <= rules


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_edge_bundle_carries_the_baked_config(apps: dict[str, Synthesized], name: str) -> None:
    app = apps[name]
    baked = app.asset_of(EDGE_HANDLER) / "backorigin" / "_baked"
    config = json.loads((baked / "config.json").read_text())
    facts = json.loads((baked / "bundle.json").read_text())
    assert config == app.construct.config.model_dump(mode="json", by_alias=True)
    assert facts["role"] == "edge"
    assert facts["queue_name"] == app.construct.queue_name
    assert facts["queue_region"] == app.stack.region
    app.template().has_resource_properties(
        "AWS::SQS::Queue", {"QueueName": app.construct.queue_name}
    )


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_edge_bundle_has_no_unneeded_sdk(apps: dict[str, Synthesized], name: str) -> None:
    app = apps[name]
    bundle = app.asset_of(EDGE_HANDLER)
    top = {path.name for path in bundle.iterdir()}
    assert not top & NEVER_AT_EDGE
    assert not (bundle / "google" / "cloud").exists(), "the GCS client is the fetcher's"
    modes = {getattr(getattr(o, "auth", None), "mode", None) for o in app.construct.config.origins}
    # Azure modes sign from their recipe with the standard library (the SDK is installed
    # here, where the bundle is built, so the recipe names the REST version).
    assert "azure" not in top
    # GCS signs at the edge from its recipe too: HMAC with the standard library, a service
    # account's URLs with its RSA key (cryptography, never google-auth).
    assert "google" not in top
    if "service_account" in modes:
        assert "cryptography" in top
    package = {path.name for path in (bundle / "backorigin").iterdir()}
    assert not package & {"cdk", "cli", "local", "testing"}
    assert not list(bundle.rglob("*.pyc"))


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_edge_bundle_fits_lambda_at_edge(apps: dict[str, Synthesized], name: str) -> None:
    bundle = apps[name].asset_of(EDGE_HANDLER)
    raw = sum(path.stat().st_size for path in bundle.rglob("*") if path.is_file())
    zipped = zipped_size(bundle)
    EDGE_BUNDLE_SIZES[name] = (raw, zipped)
    assert zipped < EDGE_ZIP_LIMIT


def test_fetcher_bundle_carries_the_sdks_of_its_origins(apps: dict[str, Synthesized]) -> None:
    gcs = apps["gcs-public"].asset_of(FETCHER_HANDLER)
    azure = apps["azure-sas"].asset_of(FETCHER_HANDLER)
    assert (gcs / "google" / "cloud" / "storage").is_dir()
    assert (azure / "azure" / "storage" / "blob").is_dir()
    assert not (gcs / "azure").exists()
    assert {"boto3", "aws_lambda_powertools"} <= {path.name for path in gcs.iterdir()}


def test_custom_adapter_package_is_bundled(apps: dict[str, Synthesized]) -> None:
    app = apps["custom-adapter"]
    for handler in (EDGE_HANDLER, FETCHER_HANDLER):
        bundle = app.asset_of(handler)
        assert (bundle / "backorigin_directory" / "__init__.py").is_file()
        facts = json.loads((bundle / "backorigin" / "_baked" / "bundle.json").read_text())
        assert facts["adapters"] == {"directory": "backorigin_directory:DirectoryAdapter"}


# What the example's adapter declares (examples/custom-adapter/directory-origin.yaml).
JWT_KEY = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:media/jwt-key-Xy12Ab"
FILE_SYSTEM = "arn:aws:elasticfilesystem:eu-west-1:123456789012:file-system/fs-0123456789abcdef0"


def test_custom_adapter_declares_a_package_for_the_edge_only(
    apps: dict[str, Synthesized],
) -> None:
    app = apps["custom-adapter"]
    edge = app.asset_of(EDGE_HANDLER)
    fetcher = app.asset_of(FETCHER_HANDLER)
    # PyJWT, from the adapter's `edge` extra: installed for the Lambda platform, importable.
    assert (edge / "jwt" / "api_jwt.py").is_file()
    assert any(p.name.lower().startswith("pyjwt-") for p in edge.glob("*.dist-info"))
    code = f"import sys; sys.path.insert(0, {str(edge)!r}); import jwt; print(jwt.__file__)"
    probe = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    assert probe.stdout.strip() == str(edge / "jwt" / "__init__.py")
    # The fetcher reads the disk and never signs: the package is not in its bundle.
    assert not (fetcher / "jwt").exists()


def test_custom_adapter_declares_iam_for_the_fetcher_only(apps: dict[str, Synthesized]) -> None:
    app = apps["custom-adapter"]
    edge = grants(role_statements(app.template_json(app.edge_stack_name), EDGE_HANDLER))
    fetcher = grants(role_statements(app.template_json(), FETCHER_HANDLER))
    assert ("elasticfilesystem:ClientMount", FILE_SYSTEM) in fetcher
    (mount,) = (
        s
        for s in role_statements(app.template_json(), FETCHER_HANDLER)
        if s["Action"] == "elasticfilesystem:ClientMount"
    )
    assert mount["Condition"] == {"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}}
    assert not {action for action, _ in edge} & {"elasticfilesystem:ClientMount"}
    # The edge signs with the key; the fetcher declared that it resolves no secret.
    assert ("secretsmanager:GetSecretValue", JWT_KEY) in edge
    assert not {action for action, _ in fetcher} & {"secretsmanager:GetSecretValue"}
