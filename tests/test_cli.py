"""The ``backorigin`` console script: validate and schema."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from backorigin.config import dump_json_schema

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*/backorigin.yaml"))
SCRIPT = shutil.which("backorigin", path=str(Path(sys.executable).parent))


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert SCRIPT, "the backorigin console script is not installed"
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, input=stdin, check=False)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_validate_ok(path: Path) -> None:
    result = run("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def test_validate_several_files() -> None:
    result = run("validate", *map(str, EXAMPLES))
    assert result.returncode == 0
    assert result.stdout.count(": ok\n") == len(EXAMPLES)


def test_validate_reports_paths_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "bucket: {name: abc}\n"
        "origins:\n"
        "  - {name: a, type: gcs, bucket: old, auth: {mode: hmac}}\n"
        "  - {name: b, type: nfs}\n"
    )
    result = run("validate", str(bad))
    assert result.returncode == 2
    assert "origins[0].auth.access_id (line 3): required field is missing" in result.stderr
    assert "origins[1].type (line 4): unknown origin type 'nfs'" in result.stderr
    assert result.stdout == ""


def test_validate_names_each_invalid_file_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("bucket: {name: abc}\norigins: []\n")
    result = run("validate", str(bad), str(EXAMPLES[0]), "-", stdin="bucket: 1\n")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"invalid configuration in {bad} (1 problem(s)):"
    assert result.stderr.count(str(bad)) == 1
    assert "-: invalid configuration (" in result.stderr  # stdin has no name of its own
    assert f"{EXAMPLES[0]}: ok" in result.stdout


def test_a_deprecated_setting_is_one_plain_warning_line(tmp_path: Path) -> None:
    config = tmp_path / "old.yaml"
    config.write_text(
        "bucket: {name: media-new}\n"
        "origins: [{name: old, type: gcs, bucket: old-media, retry_timeout: 1m}]\n"
    )
    result = run("validate", str(config))
    assert (result.returncode, result.stdout) == (0, "ok\n")
    assert result.stderr.splitlines() == [
        "warning: origin 'old': retry_timeout is deprecated and will be removed in the next "
        "release; write retries: 5 (the number of retries that fit in 60s of backoff) instead"
    ]


def test_validate_from_stdin() -> None:
    result = run("validate", "-", stdin=EXAMPLES[0].read_text())
    assert (result.returncode, result.stdout) == (0, "ok\n")


def test_schema_prints_the_committed_schema() -> None:
    result = run("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "backorigin configuration"
    assert "HttpOrigin" in schema["$defs"]


def test_committed_schema_is_current() -> None:
    committed = (ROOT / "backorigin.schema.json").read_text()
    assert committed == dump_json_schema(), "run `make schema` and commit backorigin.schema.json"


def test_committed_config_reference_is_current() -> None:
    committed = (ROOT / "docs" / "CONFIG.md").read_text()
    assert committed == run("schema", "--format", "markdown").stdout, "run `make schema`"
    # The file names the make target that writes it, and that target exists and writes it.
    target = re.search(r"by `make (\w+)`", committed)
    assert target is not None
    makefile = (ROOT / "Makefile").read_text()
    rule = makefile.split(f"\n{target.group(1)}:", 1)[1].split("\n\n", 1)[0]
    assert "docs/CONFIG.md" in rule


def test_schema_validates_the_examples() -> None:
    schema = json.loads((ROOT / "backorigin.schema.json").read_text())
    for path in EXAMPLES:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
