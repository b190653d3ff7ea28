"""Lambda bundles: baked config, only the needed dependencies, importable on their own."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

from backorigin.adapters import OriginAdapter, RawGet, register_adapter
from backorigin.bundling import BundleError, bundle, deployment_needs, requirements_for
from backorigin.config import OriginConfig, load_config
from backorigin.types import (
    DeploymentNeeds,
    FunctionRole,
    GetOptions,
    IamStatement,
    ObjectInfo,
    OriginSpec,
)

EVENTS = Path(__file__).resolve().parent / "events"
SRC = Path(__file__).resolve().parent.parent / "src" / "backorigin"
SECRET = "bundle-test-secret-value-51c0ffee"
LOCAL_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

HTTP_CONFIG = """\
bucket: {name: media-new, region: eu-west-1}
origins:
  - name: web
    type: http
    base_url: https://old.example.com/static/
    auth: {mode: bearer, token: {secret: {env: OLD_SITE_TOKEN}}}
"""


def names(requirements: list[str]) -> set[str]:
    return {r.split(">")[0].split("=")[0].split("<")[0].split("[")[0].lower() for r in requirements}


@pytest.fixture(scope="module")
def edge_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("edge") / "bundle"
    return bundle(
        load_config(HTTP_CONFIG),
        target,
        role="edge",
        python=LOCAL_PYTHON,
        queue_name="backorigin-copy",
        queue_region="eu-west-1",
    )


def test_the_config_is_baked_without_secret_values(
    edge_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLD_SITE_TOKEN", SECRET)
    baked = edge_bundle / "backorigin" / "_baked"
    config = json.loads((baked / "config.json").read_text())
    assert config["origins"][0]["auth"]["token"] == {
        "secret": {"env": "OLD_SITE_TOKEN", "file": None, "aws_secretsmanager": None, "key": None}
    }
    facts = json.loads((baked / "bundle.json").read_text())
    assert facts["adapters"] == {"http": "backorigin.adapters.http:HttpAdapter"}
    assert (facts["queue_name"], facts["queue_region"]) == ("backorigin-copy", "eu-west-1")
    for path in edge_bundle.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".py", ".txt"):
            assert SECRET not in path.read_text(errors="ignore")


def test_the_edge_bundle_carries_only_what_it_needs(edge_bundle: Path) -> None:
    top = {p.name.lower() for p in edge_bundle.iterdir()}
    assert {"backorigin", "pydantic", "pydantic_core", "yaml", "urllib3"} <= top
    for heavy in ("boto3", "botocore", "google", "azure", "aws_lambda_powertools", "click"):
        assert heavy not in top
    package = {p.name for p in (edge_bundle / "backorigin").iterdir()}
    assert not package & {"cdk", "cli", "local", "testing"}
    # Built for this interpreter, so precompiled (a read-only bundle cannot cache bytecode).
    assert (edge_bundle / "backorigin" / "keys.py").exists()
    assert list((edge_bundle / "backorigin" / "__pycache__").glob("keys.*.pyc"))


def test_bytecode_only_for_the_matching_interpreter(tmp_path: Path) -> None:
    other = "3.12" if LOCAL_PYTHON != "3.12" else "3.13"
    target = bundle(load_config(HTTP_CONFIG), tmp_path / "b", python=other, install=False)
    assert not list(target.rglob("*.pyc"))


def test_the_edge_bundle_runs_alone_in_a_clean_interpreter(edge_bundle: Path) -> None:
    code = f"""
import json, sys
sys.path[:0] = [{str(edge_bundle)!r}]
from backorigin.handlers import lambda_entry
primary = json.load(open({str(EVENTS / "origin-request-primary.json")!r}))
out = lambda_entry.edge(primary, None)
secondary = json.load(open({str(EVENTS / "origin-request-secondary.json")!r}))
rejected = json.loads(json.dumps(secondary))
rejected["Records"][0]["cf"]["request"]["uri"] = "/a/../b"
bad = lambda_entry.edge(rejected, None)
sdks = {{"boto3", "botocore", "google", "azure"}}
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & sdks)
files = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
outside = sorted({{f for f in files if "site-packages" in f}})
print(json.dumps({{"uri": out["uri"], "bad": bad["status"], "heavy": heavy, "files": outside}}))
"""
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    # The handler prints its EMF metric lines first; the report is the last line.
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["uri"] == "/images/cat%20photo.jpg"
    assert report["bad"] == "400"
    assert report["heavy"] == []
    assert report["files"] == [], "only the bundle and the standard library may be imported"


def test_edge_needs_depend_on_auth_modes() -> None:
    def edge_needs(origin: str) -> set[str]:
        config = load_config(f"bucket: {{name: abc}}\norigins:\n  - {origin}\n")
        return names(requirements_for(config, "edge"))

    core = {"pydantic", "pyyaml", "urllib3"}
    assert (
        edge_needs(
            "{name: a, type: azure, account_url: 'https://x.blob.core.windows.net', "
            "container: abc, auth: {mode: sas, token: {secret: {env: T}}}}"
        )
        == core
    )
    # An account key signs a per-blob SAS from the recipe, with the standard library.
    assert (
        edge_needs(
            "{name: a, type: azure, account_url: 'https://x.blob.core.windows.net', "
            "container: abc, auth: {mode: account_key, account_key: {secret: {env: K}}}}"
        )
        == core
    )
    # A service account's URLs are signed with its RSA key: cryptography, not google-auth.
    service_account = edge_needs(
        "{name: g, type: gcs, bucket: old-media, "
        "auth: {mode: service_account, credentials: {secret: {env: SA}}}}"
    )
    assert "cryptography" in service_account
    assert "google-auth" not in service_account
    assert edge_needs("{name: g, type: gcs, bucket: old-media}") == core


def test_edge_needs_only_the_origins_cloudfront_reaches_through_it() -> None:
    gcs = (
        "{name: vault, type: gcs, bucket: old-media, "
        "auth: {mode: service_account, credentials: {secret: {env: SA}}}}"
    )
    web = "{name: web, type: http, base_url: 'https://old.example.com/'}"
    fallback = load_config(
        f"bucket: {{name: abc}}\norigins:\n  - {web}\n  - {gcs}\n"
        "routes: [{prefix: '', origin: web, fallback: [vault]}]\n"
    )
    routed = load_config(
        f"bucket: {{name: abc}}\norigins:\n  - {web}\n  - {gcs}\n"
        "routes: [{prefix: '', origin: vault, fallback: [web]}]\n"
    )
    assert list(deployment_needs(fallback, "edge")) == ["web"]
    assert list(deployment_needs(fallback, "fetcher")) == ["web", "vault"]
    assert "cryptography" not in names(requirements_for(fallback, "edge"))
    assert "google-cloud-storage" in names(requirements_for(fallback, "fetcher"))
    assert "cryptography" in names(requirements_for(routed, "edge"))


def test_fetcher_needs_the_sdks_of_its_origins() -> None:
    config = load_config(
        "bucket: {name: abc}\norigins:\n  - {name: g, type: gcs, bucket: old-media}\n"
    )
    needs = names(requirements_for(config, "fetcher"))
    assert {"boto3", "aws-lambda-powertools", "google-cloud-storage", "pydantic"} <= needs
    assert "azure-storage-blob" not in needs
    assert "click" not in needs
    assert "rich" not in needs


def test_edge_is_x86_64_only(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="x86_64"):
        bundle(load_config(HTTP_CONFIG), tmp_path / "b", role="edge", arch="arm64", install=False)


def test_a_non_empty_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("x")
    with pytest.raises(BundleError, match="not empty"):
        bundle(load_config(HTTP_CONFIG), tmp_path, install=False)


def test_the_edge_bundle_carries_its_plan(edge_bundle: Path, tmp_path: Path) -> None:
    from backorigin.bundling import edge_plan

    baked = edge_bundle / "backorigin" / "_baked"
    plan = json.loads((baked / "edge-plan.json").read_text())
    assert plan == json.loads(json.dumps(edge_plan(load_config(HTTP_CONFIG))))
    # bearer: signed at the edge from the adapter's recipe, which names the secret only
    assert plan["origins"]["web"]["lean"] is True
    assert plan["origins"]["web"]["signing"] == {
        "kind": "headers",
        "headers": {"authorization": {"secret": {"env": "OLD_SITE_TOKEN"}, "prefix": "Bearer "}},
    }
    fetcher = bundle(load_config(HTTP_CONFIG), tmp_path / "f", role="fetcher", install=False)
    assert not (fetcher / "backorigin" / "_baked" / "edge-plan.json").exists()


# --- what adapters declare, and that bundling and the construct read only that ----------------


class TileOrigin(OriginConfig):
    type: Literal["tiles"]
    host: str
    signed: bool = False
    table_arn: str | None = None


class TileAdapter(OriginAdapter[TileOrigin]):
    """A third-party adapter defined at run time, with its own deployment declaration."""

    config_model = TileOrigin

    @classmethod
    def deployment(cls, config: TileOrigin, role: FunctionRole) -> DeploymentNeeds:
        if role == "edge":
            return DeploymentNeeds(packages=["six>=1.16"] if config.signed else [])
        statements = []
        if config.table_arn is not None:
            statements.append(IamStatement(["dynamodb:GetItem"], [config.table_arn]))
        return DeploymentNeeds(packages=["idna>=3.7"], statements=statements)

    def head(self, key: str) -> ObjectInfo:
        raise NotImplementedError

    def get_once(self, key: str, options: GetOptions) -> RawGet:
        raise NotImplementedError

    def cloudfront_origin(self) -> OriginSpec:
        return OriginSpec(domain=self.config.host)


TABLE = "arn:aws:dynamodb:eu-west-1:123456789012:table/tiles"


@pytest.mark.usefixtures("clean_registry")
def test_a_third_party_declaration_is_what_bundling_uses() -> None:
    register_adapter("tiles", TileAdapter)
    signed = load_config(
        "bucket: {name: abc}\norigins:\n"
        f"  - {{name: t, type: tiles, host: tiles.example.com, signed: true, table_arn: {TABLE}}}\n"
    )
    plain = load_config(
        "bucket: {name: abc}\norigins:\n  - {name: t, type: tiles, host: tiles.example.com}\n"
    )
    assert names(requirements_for(signed, "edge")) == {"pydantic", "pyyaml", "urllib3", "six"}
    assert names(requirements_for(plain, "edge")) == {"pydantic", "pyyaml", "urllib3"}
    assert {"idna", "boto3"} <= names(requirements_for(plain, "fetcher"))
    assert "six" not in names(requirements_for(signed, "fetcher"))
    (statement,) = deployment_needs(signed, "fetcher")["t"].statements
    assert (statement.actions, statement.resources) == (("dynamodb:GetItem",), (TABLE,))
    assert deployment_needs(plain, "fetcher")["t"].statements == ()


@pytest.mark.usefixtures("clean_registry")
def test_a_declaration_of_the_wrong_type_is_refused() -> None:
    class Careless(TileAdapter):
        @classmethod
        def deployment(cls, config: TileOrigin, role: FunctionRole) -> DeploymentNeeds:
            return ["six"]  # type: ignore[return-value]

    register_adapter("tiles", Careless)
    config = load_config(
        "bucket: {name: abc}\norigins:\n  - {name: t, type: tiles, host: tiles.example.com}\n"
    )
    with pytest.raises(BundleError, match="not a DeploymentNeeds"):
        requirements_for(config, "edge")


def test_aws_s3_origins_declare_read_access_for_their_auth_mode() -> None:
    config = load_config(
        "bucket: {name: abc}\norigins:\n"
        "  - {name: a, type: s3, bucket: old, region: eu-west-1, prefix: media/}\n"
        "  - {name: b, type: s3, bucket: old, region: eu-west-1, auth: {mode: assume_role,"
        " role_arn: 'arn:aws:iam::210987654321:role/reader'}}\n"
        "  - {name: c, type: s3, bucket: old, endpoint_url: 'https://s3.example.net'}\n"
        "  - {name: web, type: http, base_url: 'https://old.example.com/'}\n"
        "routes: [{prefix: '', origin: web, fallback: [a, b, c]}]\n"
    )
    needs = deployment_needs(config, "fetcher")
    pairs = {
        name: {(a, r) for s in found.statements for a in s.actions for r in s.resources}
        for name, found in needs.items()
    }
    assert pairs == {
        "a": {
            ("s3:GetObject", "arn:${AWS::Partition}:s3:::old/media/*"),
            ("s3:ListBucket", "arn:${AWS::Partition}:s3:::old"),
        },
        "b": {("sts:AssumeRole", "arn:aws:iam::210987654321:role/reader")},
        "c": set(),  # an S3-compatible store is not governed by IAM
        "web": set(),
    }
    # The wildcard comes with the reason cdk-nag's acknowledgment gives.
    (wildcard,) = (s for s in needs["a"].statements if s.resources[0].endswith("*"))
    assert wildcard.wildcard_reason is not None
    assert "only its bucket and prefix" in wildcard.wildcard_reason


def test_iam_statements_refuse_a_bare_string() -> None:
    with pytest.raises(TypeError):
        IamStatement("s3:GetObject", ["arn:aws:s3:::b/*"])
    with pytest.raises(ValueError, match="at least one"):
        IamStatement(["s3:GetObject"], [])


# Built-in origin types, from backorigin's own entry points, and every config class of them.
BUILTIN_TYPES = {
    ep.name
    for ep in importlib.metadata.distribution("backorigin").entry_points
    if ep.group == "backorigin.adapters"
}
DEPLOYMENT_CODE = [SRC / "bundling.py", SRC / "cdk" / "construct.py"]


def _builtin_config_classes() -> set[str]:
    import backorigin.config.origins as origins

    shared = {"OriginConfig", "AuthMode", "Strict"}
    return {
        name
        for name, value in vars(origins).items()
        if isinstance(value, type)
        and value.__module__ == origins.__name__
        and issubclass(value, BaseModel)
        and name not in shared
    }


@pytest.mark.parametrize("path", DEPLOYMENT_CODE, ids=lambda p: p.name)
def test_deployment_code_names_no_origin_type(path: Path) -> None:
    """Bundling and the construct know adapters only through their declarations."""
    assert {"gcs", "azure", "http", "s3"} <= BUILTIN_TYPES
    classes = _builtin_config_classes()
    assert {"S3Origin", "GcsServiceAccountAuth", "AzureAccountKeyAuth"} <= classes
    builtin_modules = {f"backorigin.adapters.{name}" for name in BUILTIN_TYPES}
    tree = ast.parse(path.read_text(), str(path))
    # The CDK's own classes may share a name (aws_cloudfront_origins.HttpOrigin).
    cdk_modules = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        and ((node.module or "") if isinstance(node, ast.ImportFrom) else "").startswith("aws_cdk")
        for alias in node.names
    }
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in BUILTIN_TYPES:
            found.append(f"line {node.lineno}: the string {node.value!r}")
        elif isinstance(node, ast.Name) and node.id in classes:
            found.append(f"line {node.lineno}: {node.id}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in classes
            and not (isinstance(node.value, ast.Name) and node.value.id in cdk_modules)
        ):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module in builtin_modules or module == "backorigin.config.origins":
                found.append(f"line {node.lineno}: from {module} import ...")
            found += [
                f"line {node.lineno}: imports {a.name}" for a in node.names if a.name in classes
            ]
        elif isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: import {a.name}"
                for a in node.names
                if a.name in builtin_modules
            ]
    assert not found, f"{path.name} names origin types: {found}"
