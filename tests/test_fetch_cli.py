"""``backorigin fetch`` as users run it: real processes, a real origin, SeaweedFS."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backorigin.testing.http_origin import HttpOriginServer

MiB = 1024 * 1024
SCRIPT = shutil.which("backorigin", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="module")
def origin() -> Iterator[HttpOriginServer]:
    with HttpOriginServer() as server:
        yield server


def payload(size: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def config_file(tmp_path: Path, bucket: str, seaweedfs: Any, origin: HttpOriginServer) -> Path:
    path = tmp_path / "backorigin.yaml"
    path.write_text(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        "origins:\n"
        f"  - {{name: web, type: http, base_url: '{origin.url}', backoff: 10ms}}\n"
        "copy: {part_size: 5MiB, concurrency: 2, lease_ttl: 2s}\n"
    )
    return path


@pytest.fixture(autouse=True)
def _credentials(s3_credentials: dict[str, str]) -> None:
    CREDENTIALS.update(s3_credentials)


CREDENTIALS: dict[str, str] = {}


def environment() -> dict[str, str]:
    return {**os.environ, **CREDENTIALS}


def fetch(*args: str) -> subprocess.CompletedProcess[str]:
    assert SCRIPT
    return subprocess.run(
        [SCRIPT, "fetch", *args], capture_output=True, text=True, env=environment(), check=False
    )


def stored(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_fetch_prints_a_line_per_key_and_exit_status(
    config_file: Path, origin: HttpOriginServer, s3_client: Any, bucket: str
) -> None:
    origin.put("cli/a.txt", b"alpha")
    origin.put("cli/b.txt", b"bravo")
    result = fetch(str(config_file), "cli/a.txt", "cli/b.txt")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("\t")[:2] for line in lines] == [
        ["cli/a.txt", "copied"],
        ["cli/b.txt", "copied"],
    ]
    assert stored(s3_client, bucket, "cli/b.txt") == b"bravo"
    again = fetch(str(config_file), "cli/a.txt", "cli/missing.txt")
    assert again.returncode == 1
    outcomes = [line.split("\t")[1] for line in again.stdout.splitlines()]
    assert outcomes == ["exists", "not_found"]
    assert "not found at web" in again.stdout


def test_fetch_reports_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("bucket: {name: abc}\norigins: []\n")
    result = fetch(str(bad), "k")
    assert result.returncode == 2
    assert "origins" in result.stderr


def test_eight_processes_read_the_origin_once(
    config_file: Path, origin: HttpOriginServer, s3_client: Any, bucket: str
) -> None:
    key = "cli/hot.bin"
    data = payload(12 * MiB, key)
    origin.put(key, data)
    origin.reset_counters()
    procs = [
        subprocess.Popen(
            [SCRIPT or "", "fetch", str(config_file), key],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        for _ in range(8)
    ]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        outcomes.append(out.split("\t")[1] if out else f"no output: {err}")
    assert outcomes.count("copied") == 1, outcomes
    assert set(outcomes) <= {"copied", "in_progress", "exists"}, outcomes
    assert origin.bytes_served(key) == len(data)
    assert stored(s3_client, bucket, key) == data


def test_a_killed_copy_resumes_without_rereading_finished_parts(
    config_file: Path, origin: HttpOriginServer, s3_client: Any, bucket: str
) -> None:
    key = "cli/interrupted.bin"
    data = payload(26 * MiB, key)
    origin.put(key, data)
    origin.reset_counters()
    reached = threading.Event()

    def hold_the_fourth_get(n: int) -> None:
        if n == 4:
            reached.set()
            time.sleep(3)  # the copier is killed while it waits for this part

    origin.on_get(key, hold_the_fourth_get)
    proc = subprocess.Popen(
        [SCRIPT or "", "fetch", str(config_file), key],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    try:
        assert reached.wait(60), "the copier never reached the fourth part"
        time.sleep(0.3)  # let the parts already read finish uploading
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    origin.clear_faults(key)
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == [key]
    time.sleep(2.2)  # the killed copier's lease (lease_ttl: 2s) expires
    result = fetch(str(config_file), key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split("\t")[1] == "copied"
    assert stored(s3_client, bucket, key) == data
    assert origin.bytes_served(key) <= 1.1 * len(data)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
