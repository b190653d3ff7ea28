"""``backorigin fetch`` as users run it: real processes, a real origin, SeaweedFS."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backorigin.testing.http_origin import HttpOriginServer
from backorigin.transfer.lease import LeaseState, lease_key

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


def lease_state(s3: Any, bucket: str, key: str) -> LeaseState | None:
    """The copy lease of ``key`` as a copier left it in the bucket (None if there is none)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=lease_key("", key))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return LeaseState.decode(body)


def recorded_parts(s3: Any, bucket: str, key: str) -> int:
    """How many finished parts the lease of ``key`` records."""
    state = lease_state(s3, bucket, key)
    return 0 if state is None else len(state.parts)


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``condition`` until it holds; False if it never did within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_for_lease_expiry(s3: Any, bucket: str, key: str) -> None:
    """Wait until the wall clock passes the expiry the lease of ``key`` states.

    A lease expires by the clock (that is its contract), so this waits for the time the
    lease itself names, not for a guess.
    """
    state = lease_state(s3, bucket, key)
    assert state is not None, "the killed copier left no lease"
    while time.time() <= state.expires:
        time.sleep(max(0.01, state.expires - time.time()))


def test_fetch_prints_a_line_per_key_and_exit_status(
    config_file: Path, origin: HttpOriginServer, s3_client: Any, bucket: str
) -> None:
    origin.put("cli/a.txt", b"alpha")
    origin.put("cli/b.txt", b"bravo")
    result = fetch(str(config_file), "cli/a.txt", "cli/b.txt")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["cli/a.txt", "copied"],
        ["cli/b.txt", "copied"],
    ]
    assert stored(s3_client, bucket, "cli/b.txt") == b"bravo"
    again = fetch(str(config_file), "cli/a.txt", "cli/missing.txt")
    assert again.returncode == 1
    outcomes = [line.split()[1] for line in again.stdout.splitlines()]
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
        outcomes.append(out.split()[1] if out else f"no output: {err}")
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
    # From the fourth part on, every read waits at a gate: the copier finishes parts 1-3 and
    # is then killed with parts 4 and 5 held, so exactly parts 1-3 are in S3 and recorded.
    gate = origin.hold(key, which=lambda n: n >= 4)
    proc = subprocess.Popen(
        [SCRIPT or "", "fetch", str(config_file), key],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    try:
        assert gate.wait_held(1), "the copier never reached the fourth part"
        recorded = wait_until(lambda: recorded_parts(s3_client, bucket, key) >= 3)
        assert recorded, "the copier never recorded its first three parts"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        # The gate opens once the origin has seen the dead copier's reads go, so nothing is
        # sent to it.
        emptied = gate.wait_empty()
        origin.clear_faults(key)
    assert emptied, "the origin never saw the killed copier's connections close"
    assert recorded_parts(s3_client, bucket, key) == 3
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == [key]
    wait_for_lease_expiry(s3_client, bucket, key)
    result = fetch(str(config_file), key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split()[1] == "copied"
    assert stored(s3_client, bucket, key) == data
    # Parts 1-3 were read by the killed copier, parts 4-6 by the resumed one: once each.
    assert origin.bytes_served(key) == len(data)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
