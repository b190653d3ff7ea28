"""Lambda bundles: baked config, only the needed dependencies, importable on their own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backorigin.bundling import BundleError, bundle, requirements_for
from backorigin.config import load_config

EVENTS = Path(__file__).resolve().parent / "events"
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
    report = json.loads(result.stdout)
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
    assert "azure-storage-blob" in edge_needs(
        "{name: a, type: azure, account_url: 'https://x.blob.core.windows.net', container: abc, "
        "auth: {mode: account_key, account_key: {secret: {env: K}}}}"
    )
    assert "google-auth" in edge_needs(
        "{name: g, type: gcs, bucket: old-media, "
        "auth: {mode: service_account, credentials: {secret: {env: SA}}}}"
    )
    assert edge_needs("{name: g, type: gcs, bucket: old-media}") == core


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
    assert plan["origins"]["web"]["lean"] is False  # bearer: signed by its adapter
    fetcher = bundle(load_config(HTTP_CONFIG), tmp_path / "f", role="fetcher", install=False)
    assert not (fetcher / "backorigin" / "_baked" / "edge-plan.json").exists()
