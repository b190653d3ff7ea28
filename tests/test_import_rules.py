"""The architecture's import rules, checked on the source: nothing imports upward."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "backorigin"

# Rank of each top-level module; a module may import only strictly lower ranks (or its own
# package). Mirrors the module table of the architecture notes.
RANK = {
    "errors": 0,
    "cloudfront_rules": 0,
    "_servers": 0,
    "types": 1,
    "plugins": 1,
    "config": 2,
    "keys": 3,
    "adapters": 4,
    "testing": 5,
    "transfer": 5,
    "bundling": 5,
    "handlers": 6,
    "prewarm": 6,
    "local": 7,
    "cli": 8,
}
# The CDK construct sits beside the runtime: it may read the config, never the handlers' code.
CDK_MAY_IMPORT = {"errors", "types", "plugins", "config", "bundling"}

# Third-party SDKs and the only places that may import them.
SDK_HOMES = {
    "google": {"adapters.gcs"},
    "azure": {"adapters.azure"},
    "aws_cdk": {"cdk"},
    "constructs": {"cdk"},
    "aiohttp": {"testing.http_origin", "local"},
    "aws_lambda_powertools": {"handlers.fetcher", "local"},
    "awscrt": {"transfer"},
    "boto3": {"config.secrets", "adapters.s3", "transfer", "handlers", "prewarm", "local", "cli"},
    "botocore": {
        "config.secrets",
        "adapters.s3",
        "transfer",
        "handlers",
        "prewarm",
        "local",
        "cli",
    },
}


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def in_home(module: str, homes: set[str]) -> bool:
    return any(module == home or module.startswith(home + ".") for home in homes)


@pytest.mark.parametrize(("module", "path"), modules(), ids=lambda v: str(v))
def test_no_upward_imports(module: str, path: Path) -> None:
    top = module.split(".")[0] if module else ""
    for name in imported(path):
        if not name.startswith("backorigin.") or not top:
            continue
        target = name.split(".")[1]
        if target == top:
            continue
        if top == "cdk":
            assert target in CDK_MAY_IMPORT, f"{module} imports {name}"
            continue
        assert target in RANK, f"{name} is not in the architecture table"
        assert top in RANK, f"{module} is not in the architecture table"
        assert RANK[target] < RANK[top], f"{module} imports {name}, which is above it"


@pytest.mark.parametrize(("module", "path"), modules(), ids=lambda v: str(v))
def test_sdks_only_in_their_homes(module: str, path: Path) -> None:
    for name in imported(path):
        root = name.split(".")[0]
        if root in SDK_HOMES:
            assert in_home(module, SDK_HOMES[root]), f"{module} imports the {root} SDK"


def test_handlers_and_keys_load_no_sdk() -> None:
    code = (
        "import sys, json, backorigin.handlers, backorigin.keys, backorigin.adapters;"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    heavy = (
        "boto3",
        "botocore",
        "google",
        "azure",
        "aws_cdk",
        "jsii",
        "aiohttp",
        "aws_lambda_powertools",
        "awscrt",
    )
    offenders = [m for m in loaded if m.split(".")[0] in heavy]
    assert offenders == []
