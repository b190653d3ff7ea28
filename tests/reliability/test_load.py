"""``backorigin serve`` (the real command, its own process) under 200 concurrent viewers.

A short, bounded run on a mix of hits and misses: every answer must be 200 with the exact bytes,
and every key served from the origin must end up copied into S3. No timing is asserted; the
numbers worth reporting come from ``benchmarks/load_serve.py`` (docs/RELIABILITY.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from load_driver import dataset, digest, drive, lost_copies, run
from reliability_support import SEED, Lab

from backorigin.testing.servers import free_port

SCRIPT = shutil.which("backorigin", path=str(Path(sys.executable).parent))
CLIENTS = 200
SECONDS = 6.0
# Each viewer makes at least this many requests however slow the machine, so the mix of hits,
# misses and repeated misses runs in full; the seconds only bound a fast machine's run.
ROUNDS = 3


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{log.read_text()[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("serve did not start listening")


@pytest.fixture
def serve(lab: Lab, tmp_path: Path, s3_credentials: dict[str, str]) -> Iterator[str]:
    """`backorigin serve` on the lab's bucket and the shared HTTP origin."""
    assert SCRIPT, "the backorigin command is not installed"
    config = tmp_path / "serve.yaml"
    config.write_text(lab.text(http={"retries": 2}))
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [SCRIPT, "serve", str(config), "--port", str(port), "--workers", "4"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **s3_credentials},
        )
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        tracebacks = log.read_text(errors="replace").count("Traceback")
        assert tracebacks == 0, (
            f"serve logged {tracebacks} traceback(s):\n{log.read_text()[-3000:]}"
        )


def test_serve_under_two_hundred_concurrent_viewers(lab: Lab, serve: str) -> None:
    objects = dataset(900, seed=SEED)
    keys = sorted(objects)
    hits, misses = keys[:300], keys[300:]
    for key in keys:
        lab.origin.put(key, objects[key])
    for key in hits:
        lab.s3.put_object(Bucket=lab.bucket, Key=key, Body=objects[key])
    report = run(
        drive(
            serve,
            {k: digest(objects[k]) for k in hits},
            {k: digest(objects[k]) for k in misses},
            clients=CLIENTS,
            seconds=SECONDS,
            miss_share=0.08,
            seed=SEED,
            min_rounds=ROUNDS,
        )
    )
    print(report.summary())  # shown with -s; the benchmark is where numbers are reported
    assert report.errors == [], report.errors[:10]
    assert report.requests >= ROUNDS * CLIENTS
    assert report.missed, "no miss was requested"

    def stored(key: str) -> bytes | None:
        found = lab.checker.stored(key)
        return None if found is None else found[0]

    expected = {k: digest(v) for k, v in objects.items()}
    lost = lost_copies(stored, report.missed, expected)
    assert lost == [], lost[:10]
    leases = lab.s3.list_objects_v2(Bucket=lab.bucket, Prefix=".backorigin/").get("KeyCount", 0)
    assert leases == 0, "every copy released its lease"
