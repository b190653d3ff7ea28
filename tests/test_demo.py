"""The README's demo runs end to end, so it cannot silently rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo" / "run_demo.py"


def test_the_demo_shows_origin_then_s3_for_every_object() -> None:
    result = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.endswith(" ok")]
    assert {row[0] for row in rows} == {"index.html", "img/logo.png", "downloads/dataset.bin"}
    assert all(row[1:3] == ["origin", "s3"] for row in rows)
    assert "downloads/dataset.bin                      12582912" in result.stdout
    assert "serve stopped (exit status 0)" in result.stdout
