"""Local prewarm from a real HTTP origin into SeaweedFS: killed half way, resumed, counted."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prewarm_helpers import (
    payload,
    prewarm_argv,
    read_all,
    run_prewarm,
    stored_keys,
    summary,
)

from backorigin.testing.http_origin import HttpOriginServer
from backorigin.transfer.bucket import Bucket
from backorigin.transfer.lease import Lease

COUNT = 2000
SIZE = 1024
WORKERS = 8


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``condition`` until it holds; False if it never did within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def write_config(
    path: Path, bucket: str, seaweedfs: Any, origin: HttpOriginServer, lease_ttl: str = "1s"
) -> Path:
    path.write_text(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        "origins:\n"
        f"  - {{name: web, type: http, base_url: '{origin.url}', retries: 0, backoff: 10ms}}\n"
        # A killed copier's lease expires after a second, so the re-run need not wait long.
        f"copy: {{lease_ttl: {lease_ttl}, part_size: 5MiB}}\n"
    )
    return path


def test_a_killed_prewarm_resumes_and_reads_each_object_once(
    tmp_path: Path,
    origin: HttpOriginServer,
    seaweedfs: Any,
    s3_client: Any,
    bucket: str,
    environment: dict[str, str],
) -> None:
    keys = [f"kill/{i % 25:02d}/object-{i:04d}.bin" for i in range(COUNT)]
    data = {key: payload(SIZE, key) for key in keys}
    for key in keys:
        origin.put(key, data[key], headers={"Content-Type": "application/octet-stream"})
    origin.reset_counters()
    key_file = tmp_path / "keys.txt"
    key_file.write_text("".join(k + "\n" for k in keys))
    config = write_config(tmp_path / "backorigin.yaml", bucket, seaweedfs, origin)

    # Every GET past the first half waits at a gate: the run cannot get further than that,
    # however fast or slow the machine is.
    gate = origin.hold(which=lambda n: n > COUNT // 2)
    started = time.monotonic()
    process = subprocess.Popen(
        prewarm_argv(str(config), "--keys", str(key_file), "--concurrency", str(WORKERS)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment,
    )
    try:
        # Every worker waits at the gate: each finished the object it had before, so
        # exactly the first half is read and stored.
        reached = gate.wait_held(WORKERS, timeout=120)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert reached, f"the workers never all reached the gate ({gate.waiting} did)"
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
        # The gate opens only once the origin has seen the killed workers' connections
        # close, so nothing is sent to them.
        emptied = gate.wait_empty()
        gate.release()
    first_run = time.monotonic() - started
    assert emptied, "the origin never saw the killed workers go"

    before = stored_keys(s3_client, bucket)
    read_before = {k for k in keys if origin.bytes_served(k)}
    assert len(before) == COUNT // 2
    assert read_before == before

    started = time.monotonic()
    again = run_prewarm(
        environment,
        str(config),
        "--keys",
        str(key_file),
        "--concurrency",
        str(WORKERS),
        "--failed-out",
        str(tmp_path / "failed.txt"),
    )
    second_run = time.monotonic() - started
    assert again.returncode == 0, again.stdout + again.stderr
    rows = summary(again.stdout)
    # Exactly what the killed run stored is skipped; everything else is copied now.
    assert rows["exists"] == str(len(before))
    assert rows["copied"] == str(COUNT - len(before))
    assert rows["failed"] == "0"
    assert (tmp_path / "failed.txt").read_text() == ""

    assert stored_keys(s3_client, bucket) == set(keys)
    assert read_all(s3_client, bucket, keys) == data
    head = s3_client.head_object(Bucket=bucket, Key=keys[0])
    assert head["ContentType"] == "application/octet-stream"
    assert head["Metadata"]["backorigin-origin"] == "web"

    # The origin served each object's bytes once: the killed run's workers died waiting for
    # responses, and the re-run read only what the killed run had not stored.
    served = {k: origin.bytes_served(k) for k in keys}
    assert set(served.values()) == {SIZE}
    print(
        f"\nfirst run killed after {first_run:.1f}s with {len(before)} stored; "
        f"re-run {second_run:.1f}s"
    )


def test_failures_are_written_for_a_retry_and_set_the_exit_status(
    tmp_path: Path,
    origin: HttpOriginServer,
    seaweedfs: Any,
    s3_client: Any,
    bucket: str,
    environment: dict[str, str],
) -> None:
    keys = [f"retry/{i}.txt" for i in range(6)]
    for key in keys:
        origin.put(key, key.encode())
    origin.fail(keys[1], times=10, status=500)
    origin.fail(keys[4], times=10, status=503)
    key_file = tmp_path / "keys.txt"
    # A missing key and keys no viewer can ask for: final outcomes, not retried.
    invalid = ["a/../b", ".backorigin/leases/x.json"]
    key_file.write_text("".join(k + "\n" for k in [*keys, "retry/missing.txt", *invalid]))
    config = write_config(tmp_path / "backorigin.yaml", bucket, seaweedfs, origin)
    failed = tmp_path / "failed.txt"

    first = run_prewarm(
        environment, str(config), "--keys", str(key_file), "--failed-out", str(failed)
    )
    assert first.returncode == 1, first.stdout + first.stderr
    rows = summary(first.stdout)
    assert (rows["copied"], rows["not found"], rows["failed"]) == ("4", "1", "2")
    assert rows["invalid key"] == "2"
    assert sorted(failed.read_text().splitlines()) == sorted([keys[1], keys[4]])
    assert "retry/1.txt" in first.stderr
    assert "500" in first.stderr
    assert f"run again with --keys {failed}" in first.stderr

    origin.clear_faults()
    usage = run_prewarm(
        environment, str(config), "--keys", str(failed), "--failed-out", str(failed)
    )
    assert usage.returncode == 2, usage.stderr
    assert "must not be the --keys file" in usage.stderr
    retry = run_prewarm(environment, str(config), "--keys", "-", input_text=failed.read_text())
    assert retry.returncode == 0, retry.stdout + retry.stderr
    rows = summary(retry.stdout)
    assert (rows["copied"], rows["failed"]) == ("2", "0")
    assert stored_keys(s3_client, bucket) == set(keys)


def test_usage_errors(tmp_path: Path, environment: dict[str, str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "bucket: {name: some-bucket}\n"
        "origins: [{name: web, type: http, base_url: 'http://127.0.0.1:9/'}]\n"
    )
    neither = run_prewarm(environment, str(config))
    assert neither.returncode == 2
    assert "exactly one of --keys FILE and --list" in neither.stderr
    both = run_prewarm(environment, str(config), "--keys", "-", "--list")
    assert both.returncode == 2


def test_a_key_another_copier_holds_is_retried_until_its_lease_expires(
    tmp_path: Path,
    origin: HttpOriginServer,
    seaweedfs: Any,
    s3_client: Any,
    bucket: str,
    environment: dict[str, str],
) -> None:
    keys = ["held/a.txt", "held/b.txt"]
    # Only a copy of more than one part takes a lease: a.txt is two parts of 5 MiB.
    origin.put(keys[0], b"a" * (6 * 1024 * 1024))
    origin.put(keys[1], keys[1].encode())
    origin.reset_counters()
    # A copier that died holding the lease of held/a.txt; it expires when the test says so.
    lease = Lease.acquire(Bucket(s3_client, bucket), "", keys[0], ttl=600)
    assert lease is not None
    # A held key is retried every second for 2 x lease_ttl + 5 s = 13 s: ample time to see
    # the retry and expire the lease.
    config = write_config(tmp_path / "backorigin.yaml", bucket, seaweedfs, origin, "4s")
    key_file = tmp_path / "keys.txt"
    key_file.write_text("\n".join(keys))
    process = subprocess.Popen(
        prewarm_argv(str(config), "--keys", str(key_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        # Each attempt looks the object up at the origin before it asks for the lease, and
        # only an attempt that found the lease held is tried again: a second lookup is the
        # retry.
        retried = wait_until(
            lambda: origin.request_count(keys[0], "HEAD") >= 2 or process.poll() is not None
        )
        assert retried, "the held key was never tried again"
        assert process.poll() is None, "the run ended while the lease was held"
    finally:
        lease.suspend()  # the dead copier's lease expires now
        out, err = process.communicate(timeout=120)
    assert process.returncode == 0, out + err
    assert summary(out)["copied"] == "2"
    assert stored_keys(s3_client, bucket) == set(keys)


def test_an_interrupted_run_stops_cleanly_with_a_summary(
    tmp_path: Path,
    origin: HttpOriginServer,
    seaweedfs: Any,
    s3_client: Any,
    bucket: str,
    environment: dict[str, str],
) -> None:
    keys = [f"slow/{i:02d}.txt" for i in range(20)]
    for key in keys:
        origin.put(key, key.encode())
    config = write_config(tmp_path / "backorigin.yaml", bucket, seaweedfs, origin)
    key_file = tmp_path / "keys.txt"
    key_file.write_text("\n".join(keys))
    # The first two GETs pass; every later one waits at the gate until the interrupt is seen.
    gate = origin.hold(which=lambda n: n > 2)
    process = subprocess.Popen(
        prewarm_argv(str(config), "--keys", str(key_file), "--concurrency", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    acknowledged = threading.Event()
    err_lines: list[str] = []

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            err_lines.append(line)
            if "interrupted: finishing the copies in flight" in line:
                acknowledged.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        # Both workers wait at the gate, so each has finished the key it had before.
        assert gate.wait_held(2), "the workers never reached the gate"
        process.send_signal(signal.SIGINT)
        assert acknowledged.wait(60), "the interrupt was never acknowledged"
    finally:
        gate.release()  # the two copies in flight finish; nothing new starts
    assert process.stdout is not None
    out = process.stdout.read()
    process.wait(60)
    reader.join(60)
    err = "".join(err_lines)
    assert process.returncode == 130, out + err
    assert "prewarm (interrupted)" in out
    done = stored_keys(s3_client, bucket)
    assert len(done) == 4, (sorted(done), out, err)  # two before the gate, two in flight
    assert summary(out)["copied"] == str(len(done))
