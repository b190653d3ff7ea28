"""What the CDK tests share: the apps to synthesize, their results, bundle measurements."""

from __future__ import annotations

import os

# jsii prints a banner about Node 20's end of life on every start; it is noise here.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import importlib
import importlib.util
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import cx_api
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from backorigin.cdk import BackToOriginConstruct
from backorigin.config import load_config
from backorigin.plugins import adapter_plugins

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_NAMES = ["gcs-public", "gcs-private", "azure-sas", "http-multi-origin", "custom-adapter"]
VARIANT_NAMES = ["full", "adopted", "managed", "owned", "shared", "scheduled", "migrated"]
EDGE_HANDLER = "backorigin.handlers.lambda_entry.edge"
FETCHER_HANDLER = "backorigin.handlers.lambda_entry.fetcher"
USER_FUNCTION = "UserFunction"

# Every optional prop at once: created bucket with a generated name and a prefix, a custom
# domain with a certificate, WAF, access logs, a shield region other than the stack's.
FULL_CONFIG = """\
bucket: {region: eu-west-3, prefix: media/}
origins:
  - name: web
    type: http
    base_url: https://old.example.com:8443/static/
edge:
  failover_status: [403, 404, 500]
  negative_ttl: 45s
  forward_query: [v]
"""

# An existing bucket; AWS S3 origins as fallbacks (the fetcher's role is granted read access /
# AssumeRole); a secret referenced by name rather than ARN; secrets in two other regions,
# encrypted with customer-managed keys, one read at the edge (eu-web is routed), one by the
# fetcher only.
EU_TOKEN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:backorigin/eu-token-AbCdEf"
US_PASSWORD = "arn:aws:secretsmanager:us-west-2:123456789012:secret:backorigin/us-password"
EU_KEY = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
US_KEY = "arn:aws:kms:us-west-2:123456789012:key/66666666-7777-8888-9999-000000000000"
NAMED_KEY = "arn:aws:kms:us-east-1:123456789012:key/mrk-0123456789abcdef0123456789abcdef"
BUCKET_KEY = "arn:aws:kms:ap-southeast-2:123456789012:key/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
ADOPTED_CONFIG = f"""\
bucket: {{}}
origins:
  - name: archive
    type: s3
    bucket: media-archive-old
    region: ap-southeast-2
    prefix: media/
  - name: partner
    type: s3
    bucket: partner-media
    region: us-west-2
    auth: {{mode: assume_role, role_arn: "arn:aws:iam::210987654321:role/backorigin-reader"}}
  - name: web
    type: http
    base_url: https://old.example.com/
    auth: {{mode: bearer, token: {{secret: {{aws_secretsmanager: backorigin/web-token}}}}}}
  - name: eu-web
    type: http
    base_url: https://eu.old.example.com/
    auth: {{mode: bearer, token: {{secret: {{aws_secretsmanager: "{EU_TOKEN}"}}}}}}
  - name: us-web
    type: http
    base_url: https://us.old.example.com/
    auth:
      mode: basic
      username: migration
      password: {{secret: {{aws_secretsmanager: "{US_PASSWORD}"}}}}
routes:
  - {{prefix: partner/, origin: web, fallback: [partner]}}
  - {{prefix: eu/, origin: eu-web, fallback: [us-web]}}
  - {{prefix: "", origin: web, fallback: [archive]}}
"""

# An imported bucket whose policy the construct manages, SSE-KMS with a key of the same stack.
MANAGED_CONFIG = """\
bucket: {name: media-managed, prefix: site/}
origins:
  - {name: legacy, type: gcs, bucket: old-media}
"""


@dataclass
class Synthesized:
    """One synthesized app: its construct, stacks' templates and assembly directory."""

    name: str
    construct: BackToOriginConstruct
    stack: cdk.Stack
    assembly: cx_api.CloudAssembly
    outdir: Path
    _templates: dict[str, Template] = field(default_factory=dict)

    def template_json(self, stack_name: str | None = None) -> dict[str, Any]:
        name = stack_name or self.stack.stack_name
        return dict(self.assembly.get_stack_by_name(name).template)

    def template(self) -> Template:
        """The main stack's template."""
        if "main" not in self._templates:
            self._templates["main"] = Template.from_json(self.template_json())
        return self._templates["main"]

    @property
    def edge_stack_name(self) -> str:
        """The stack holding the Lambda@Edge function (the main one in us-east-1, or
        without an edge function)."""
        edge = self.construct.edge_function
        return cdk.Stack.of(edge.lambda_ if edge else self.construct).stack_name

    def edge_template(self) -> Template:
        if "edge" not in self._templates:
            self._templates["edge"] = Template.from_json(self.template_json(self.edge_stack_name))
        return self._templates["edge"]

    def template_files(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))

    def asset_of(self, handler: str) -> Path:
        """The staged asset directory of the function with ``handler``."""
        for name in {self.stack.stack_name, self.edge_stack_name}:
            for resource in self.template_json(name)["Resources"].values():
                props = resource.get("Properties", {})
                if resource["Type"] == "AWS::Lambda::Function" and props.get("Handler") == handler:
                    key = props["Code"]["S3Key"]
                    return self.outdir / f"asset.{key.removesuffix('.zip')}"
        raise LookupError(handler)

    def validation_report(self) -> dict[str, Any]:
        return dict(json.loads((self.outdir / "validation-report.json").read_text()))

    def construct_paths(self) -> tuple[str, ...]:
        """Path prefixes of what the construct made: itself, and its function in us-east-1."""
        edge = self.construct.edge_function
        own = self.construct.node.path + "/"
        return (own, edge.lambda_.node.path) if edge else (own,)


# --- reading templates ------------------------------------------------------------------------


def flat(value: Any) -> Any:
    """A CloudFormation value as readable text: joins flattened, references as ${...}."""
    if isinstance(value, dict) and len(value) == 1:
        ((kind, argument),) = value.items()
        if kind == "Fn::Join":
            return argument[0].join(str(flat(part)) for part in argument[1])
        if kind == "Ref":
            return f"${{{argument}}}"
        if kind == "Fn::GetAtt":
            return f"${{{'.'.join(argument)}}}"
    if isinstance(value, list):
        return [flat(item) for item in value]
    return value


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def one(template: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = resources(template, kind).values()
    return found


def function(template: dict[str, Any], handler: str) -> dict[str, Any]:
    (found,) = (
        f
        for f in resources(template, "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == handler
    )
    return found


def role_statements(template: dict[str, Any], handler: str) -> list[dict[str, Any]]:
    """Every policy statement of the role of the function with ``handler``."""
    role = function(template, handler)["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def grants(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """``(action, resource)`` pairs, resources flattened."""
    pairs = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        found = statement["Resource"]
        targets = found if isinstance(found, list) else [found]
        pairs |= {(a, str(flat(r))) for a in actions for r in targets}
    return pairs


def load_example(name: str) -> Any:
    """Import an example's app.py as a module (its ``build_app`` is what the tests call)."""
    module_name = "backorigin_example_" + name.replace("-", "_")
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / name / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def install_custom_adapter(site: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
            str(site),
            str(EXAMPLES / "custom-adapter"),
        ],
        check=True,
    )


def full_app(outdir: Path) -> cdk.App:
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(
        app, "BackoriginFull", env=cdk.Environment(account="123456789012", region="eu-west-3")
    )
    BackToOriginConstruct(
        stack,
        "Migration",
        config=load_config(FULL_CONFIG),
        origin_shield_region="eu-west-2",
        domain_names=["media.example.com"],
        certificate=acm.Certificate.from_certificate_arn(
            stack, "Certificate", "arn:aws:acm:us-east-1:123456789012:certificate/abc-123"
        ),
        web_acl_id="arn:aws:wafv2:us-east-1:123456789012:global/webacl/media/0123-abcd",
        access_log_bucket=s3.Bucket.from_bucket_name(stack, "Logs", "media-access-logs"),
        access_log_prefix="media-logs/",
        removal_policy=cdk.RemovalPolicy.DESTROY,
        encryption_key=kms.Key(stack, "BucketKey", enable_key_rotation=True),
        fetcher_memory_size=2048,
        fetcher_timeout=cdk.Duration.minutes(5),
        fetcher_max_concurrency=20,
        fetcher_batch_size=4,
        fetcher_architecture=lambda_.Architecture.X86_64,
        max_receive_count=3,
        log_retention=logs.RetentionDays.ONE_WEEK,
    )
    return app


def adopted_app(outdir: Path) -> cdk.App:
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "BackoriginAdopted", env=cdk.Environment(region="ap-southeast-2"))
    BackToOriginConstruct(
        stack,
        "Migration",
        config=load_config(ADOPTED_CONFIG),
        bucket=s3.Bucket.from_bucket_name(stack, "Existing", "media-adopted"),
        encryption_key=kms.Key.from_key_arn(stack, "ImportedKey", BUCKET_KEY),
        secret_encryption_keys={
            EU_TOKEN: kms.Key.from_key_arn(stack, "EuKey", EU_KEY),
            US_PASSWORD: kms.Key.from_key_arn(stack, "UsKey", US_KEY),
            "backorigin/web-token": kms.Key.from_key_arn(stack, "NamedKey", NAMED_KEY),
        },
        expose_provenance=True,
    )
    # The app's own function, beside the construct: the construct's acknowledgments must not
    # hide cdk-nag's findings on it (it has an older runtime and the managed logs policy).
    lambda_.Function(
        stack,
        USER_FUNCTION,
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return event\n"),
    )
    return app


def managed_app(outdir: Path) -> cdk.App:
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(
        app, "BackoriginManaged", env=cdk.Environment(account="123456789012", region="eu-west-1")
    )
    BackToOriginConstruct(
        stack,
        "Migration",
        config=load_config(MANAGED_CONFIG),
        bucket=s3.Bucket.from_bucket_attributes(
            stack,
            "Existing",
            bucket_name="media-managed",
            encryption_key=kms.Key(stack, "BucketKey", enable_key_rotation=True),
        ),
        manage_bucket_policy=True,
    )
    return app


def owned_app(outdir: Path) -> cdk.App:
    """The app's own bucket (and its key), defined beside the construct."""
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(
        app, "BackoriginOwned", env=cdk.Environment(account="123456789012", region="eu-west-1")
    )
    bucket = s3.Bucket(
        stack,
        "Media",
        bucket_name="media-owned",
        encryption=s3.BucketEncryption.KMS,
        encryption_key=kms.Key(stack, "MediaKey", enable_key_rotation=True),
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        server_access_logs_bucket=s3.Bucket.from_bucket_name(stack, "Logs", "media-access-logs"),
    )
    BackToOriginConstruct(
        stack,
        "Migration",
        config=load_config(MANAGED_CONFIG.replace("media-managed", "media-owned")),
        bucket=bucket,
    )
    return app


def shared_app(outdir: Path) -> cdk.App:
    """The bucket and its key in another stack of the app (a shared data stack)."""
    app = cdk.App(outdir=str(outdir))
    env = cdk.Environment(account="123456789012", region="eu-west-1")
    data = cdk.Stack(app, "BackoriginData", env=env)
    bucket = s3.Bucket(
        data,
        "Media",
        bucket_name="media-shared",
        encryption=s3.BucketEncryption.KMS,
        encryption_key=kms.Key(data, "MediaKey", enable_key_rotation=True),
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        server_access_logs_bucket=s3.Bucket.from_bucket_name(data, "Logs", "media-access-logs"),
    )
    stack = cdk.Stack(app, "BackoriginShared", env=env)
    BackToOriginConstruct(
        stack,
        "Migration",
        config=load_config(MANAGED_CONFIG.replace("media-managed", "media-shared")),
        bucket=bucket,
    )
    return app


# A migration in progress with every lifecycle prop: a reconcile every day in two prefixes,
# deleting orphaned copies; an AWS S3 fallback origin the reconciler must be able to list;
# the queue and the fetchers sized for a bulk run; Origin Shield in another region than the
# stack's (the edge function's log group goes there).
SCHEDULED_CONFIG = """\
bucket: {name: media-scheduled, prefix: site/}
origins:
  - {name: legacy, type: gcs, bucket: old-media}
  - {name: archive, type: s3, bucket: media-archive-old, region: eu-central-1, prefix: old/}
routes:
  - {prefix: "", origin: legacy, fallback: [archive]}
"""
LIFECYCLE_STACK = "BackoriginLifecycle"


def lifecycle_app(outdir: Path, *, migrated: bool) -> cdk.App:
    """The same stack before the cut-over (a scheduled reconcile) and after it."""
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(
        app, LIFECYCLE_STACK, env=cdk.Environment(account="123456789012", region="eu-west-1")
    )
    during: dict[str, Any] = {
        "reconcile_schedule": scheduler.ScheduleExpression.rate(cdk.Duration.days(1)),
        "reconcile_prefixes": ["images/", "video/"],
        "reconcile_deletes": "delete",
    }
    BackToOriginConstruct(
        stack,
        "Migration",
        config=load_config(SCHEDULED_CONFIG),
        origin_shield_region="eu-central-1",
        queue_retention=cdk.Duration.days(14),
        fetcher_max_concurrency=100,
        fetcher_batch_size=10,
        dashboard_name="media-migration",
        migrated=migrated,
        **({} if migrated else during),
    )
    return app


def synthesize(name: str, app: cdk.App, outdir: Path) -> Synthesized:
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    construct = next(c for c in app.node.find_all() if isinstance(c, BackToOriginConstruct))
    try:
        assembly = app.synth()
    except RuntimeError as exc:  # cdk-nag findings fail the synthesis; the report has them
        if "ValidationFailed" not in str(exc):
            raise
        assembly = cx_api.CloudAssembly(str(outdir))
    return Synthesized(name, construct, cdk.Stack.of(construct), assembly, outdir)


@dataclass
class Run:
    """Everything the session synthesized."""

    apps: dict[str, Synthesized]
    app_py: subprocess.CompletedProcess[str]
    app_py_outdir: Path


# --- edge bundle sizes, reported at the end of the run ----------------------------------------

EDGE_BUNDLE_SIZES: dict[str, tuple[int, int]] = {}


def zipped_size(directory: Path) -> int:
    """Bytes of ``directory`` as a deflated zip, close to what the CDK CLI uploads."""
    target = directory.parent / f"{directory.name}.measure.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    size = target.stat().st_size
    target.unlink()
    return size


def synthesize_custom_adapter(base: Path, outdir: Path) -> Synthesized:
    """The third-party adapter example needs its package installed, as a user would."""
    site = base / "custom-adapter-site"
    install_custom_adapter(site)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    adapter_plugins.reset()
    try:
        return synthesize(
            "custom-adapter", load_example("custom-adapter").build_app(str(outdir)), outdir
        )
    finally:
        # Later tests must see the registry without the example's `directory` type again.
        sys.path.remove(str(site))
        importlib.invalidate_caches()
        adapter_plugins.reset()


def synthesize_all(base: Path) -> Run:
    """Every example and variant, plus one example run as ``python app.py``."""
    # The subprocess runs in parallel with the in-process syntheses (two cores here).
    app_py_outdir = base / "app-py"
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "gcs-public" / "app.py")],
        cwd=base,
        env={**os.environ, "CDK_OUTDIR": str(app_py_outdir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    apps: dict[str, Synthesized] = {}
    try:
        for name in EXAMPLE_NAMES:
            outdir = base / name
            if name == "custom-adapter":
                apps[name] = synthesize_custom_adapter(base, outdir)
            else:
                apps[name] = synthesize(name, load_example(name).build_app(str(outdir)), outdir)
        apps["full"] = synthesize("full", full_app(base / "full"), base / "full")
        apps["adopted"] = synthesize("adopted", adopted_app(base / "adopted"), base / "adopted")
        apps["managed"] = synthesize("managed", managed_app(base / "managed"), base / "managed")
        apps["owned"] = synthesize("owned", owned_app(base / "owned"), base / "owned")
        apps["shared"] = synthesize("shared", shared_app(base / "shared"), base / "shared")
        for name, migrated in (("scheduled", False), ("migrated", True)):
            outdir = base / name
            apps[name] = synthesize(name, lifecycle_app(outdir, migrated=migrated), outdir)
        stdout, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    completed = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return Run(apps, completed, app_py_outdir)
