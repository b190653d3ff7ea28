"""The third-party adapter example installs, registers itself and passes the shipped suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom-adapter"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example installed into its own site directory; the environment that sees it."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(site),
            str(EXAMPLE),
        ],
        check=True,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


def test_it_passes_the_conformance_suite(installed: dict[str, str]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(EXAMPLE),
            str(EXAMPLE / "tests"),
        ],
        capture_output=True,
        text=True,
        env=installed,
        cwd=EXAMPLE,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in summary
    assert "failed" not in summary
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 40, summary


def test_its_type_is_valid_in_configs_and_the_schema(installed: dict[str, str]) -> None:
    cli = [sys.executable, "-c", "from backorigin.cli import main; main()"]
    validate = subprocess.run(
        [*cli, "validate", str(EXAMPLE / "directory-origin.yaml")],
        capture_output=True,
        text=True,
        env=installed,
        check=False,
    )
    assert (validate.returncode, validate.stdout) == (0, "ok\n"), validate.stderr
    schema = subprocess.run(
        [*cli, "schema"], capture_output=True, text=True, env=installed, check=True
    )
    assert "DirectoryOrigin" in json.loads(schema.stdout)["$defs"]


def test_without_it_the_type_is_unknown() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from backorigin.cli import main; main()",
            "validate",
            str(EXAMPLE / "directory-origin.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown origin type 'directory'" in result.stderr
