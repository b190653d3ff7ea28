"""The construct's view of the legacy origin: the adapters' edge face, without their SDKs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from backorigin.bundling import edge_origin, edge_origin_name
from backorigin.config import load_config
from backorigin.types import OriginSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SDKS = ["boto3", "botocore", "google", "azure", "awscrt", "aws_lambda_powertools", "aws_cdk"]


def test_every_example_origin_is_computed_without_sdks_or_secrets() -> None:
    # A clean interpreter, and no secret variables set: resolving one would raise.
    code = f"""
import json, sys
from pathlib import Path
from backorigin.bundling import edge_origin
from backorigin.config import load_config
specs = {{}}
for path in sorted(Path({str(EXAMPLES)!r}).glob("*/backorigin.yaml")):
    spec = edge_origin(load_config(path))
    specs[path.parent.name] = [spec.domain, spec.path, spec.protocol, spec.port]
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({SDKS!r}))
print(json.dumps({{"specs": specs, "loaded": loaded}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, env={}
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["loaded"] == []
    assert len(report["specs"]) >= 10
    assert report["specs"]["gcs-public"] == ["storage.googleapis.com", "/old-media", "https", 443]
    assert report["specs"]["azure-sas"] == [
        "oldassets.blob.core.windows.net",
        "/assets",
        "https",
        443,
    ]


def test_the_fallback_origin_is_the_first_routes() -> None:
    config = load_config(EXAMPLES / "http-multi-origin" / "backorigin.yaml")
    assert edge_origin_name(config) == "legacy"
    assert edge_origin(config) == OriginSpec("storage.googleapis.com", "/old-media", "https", 443)


def test_without_routes_it_is_the_first_origin() -> None:
    config = load_config(
        "bucket: {name: media-new}\norigins:\n"
        "  - {name: web, type: http, base_url: 'http://old.example.com:8080/files/'}\n"
        "  - {name: other, type: gcs, bucket: old-media}\n"
    )
    assert edge_origin_name(config) == "web"
    assert edge_origin(config) == OriginSpec("old.example.com", "/files", "http", 8080)
