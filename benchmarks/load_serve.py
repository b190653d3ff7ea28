"""``backorigin serve`` under load: 200 concurrent viewers for a bounded time, hits and misses.

Run: ``.venv/bin/python benchmarks/load_serve.py [--clients 200] [--seconds 15] [--workers 4]``

Four processes, so that nobody measures a GIL it shares: EmbeddedS3 (S3, auth on), the origin
(``origin_server.py``, aiohttp's sendfile-backed FileResponse), ``backorigin serve`` itself,
and this script's viewers (one asyncio loop, aiohttp). A third of the objects are in S3 before
the run (hits); the rest only at the origin (misses, each first asked for once, then again a
moment later — a miss or, once copied, a hit). Every answer is checked: 200 with exactly the
object's bytes. Afterwards every key served from the origin must be in S3 with the right bytes
("no lost copies"). It prints requests/s and latency percentiles, the CPU each process used,
and how busy the machine's cores were. Numbers are measurements, not targets: see
docs/RELIABILITY.md. The viewer logic is ``tests/reliability/load_driver.py``, which the test
suite also runs (shorter, asserting correctness only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "reliability"))

from load_driver import dataset, digest, drive, lost_copies, run  # noqa: E402

from backorigin.local.embedded_s3 import EmbeddedS3  # noqa: E402
from backorigin.testing.servers import free_port  # noqa: E402

ACCESS_KEY = "loadbench"
SECRET_KEY = "loadbench-secret-key"  # noqa: S105 - a throwaway identity of a local server
TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values), values[3] + values[4]


def start_origin(workdir: Path, objects: dict[str, bytes]) -> tuple[subprocess.Popen[str], str]:
    routes: dict[str, dict[str, Any]] = {}
    for key, data in objects.items():
        path = workdir / "origin" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        routes[key] = {"file": str(path), "headers": {"Content-Type": "application/octet-stream"}}
    routes_file = workdir / "routes.json"
    routes_file.write_text(json.dumps(routes))
    process = subprocess.Popen(  # noqa: S603 - our own script
        [sys.executable, str(HERE / "origin_server.py"), str(routes_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("READY "):
        process.terminate()
        raise RuntimeError(f"the origin did not start: {line!r}")
    return process, line.split()[1]


def start_serve(
    workdir: Path, bucket: str, s3_url: str, origin_url: str, workers: int
) -> tuple[subprocess.Popen[bytes], str, Path]:
    config = workdir / "serve.yaml"
    config.write_text(
        f"bucket: {{name: {bucket}, endpoint_url: '{s3_url}', region: us-east-1}}\n"
        f"origins:\n  - {{name: web, type: http, base_url: '{origin_url}'}}\n"
    )
    script = shutil.which("backorigin", path=str(Path(sys.executable).parent))
    assert script, "backorigin is not installed next to this interpreter"
    port = free_port()
    log = workdir / "serve.log"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own command
            [script, "serve", str(config), "--port", str(port), "--workers", str(workers)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited:\n{log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"http://127.0.0.1:{port}", log
        time.sleep(0.1)
    raise RuntimeError("serve did not start listening")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--objects", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=4, help="serve's copy workers")
    parser.add_argument("--miss-share", type=float, default=0.08)
    parser.add_argument("--seed", type=int, default=20250917)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="backorigin-load-"))
    objects = dataset(args.objects, seed=args.seed)
    keys = sorted(objects)
    hits, misses = keys[: len(keys) // 3], keys[len(keys) // 3 :]
    s3 = EmbeddedS3(access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    s3.start()
    origin = serve = None
    try:
        client = boto3.client(
            "s3",
            endpoint_url=s3.url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=BotoConfig(
                s3={"addressing_style": "path"},
                max_pool_connections=16,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        bucket = f"load-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        for key in hits:
            client.put_object(Bucket=bucket, Key=key, Body=objects[key])
        origin, origin_url = start_origin(workdir, objects)
        serve, url, log = start_serve(workdir, bucket, s3.url, origin_url, args.workers)
        cpu_before = {
            name: process_cpu(pid)
            for name, pid in (
                ("serve", serve.pid),
                ("origin", origin.pid),
                ("s3", s3.process.pid if s3.process else 0),
                ("viewers", os.getpid()),
            )
        }
        ticks_before = machine_ticks()
        report = run(
            drive(
                url,
                {k: digest(objects[k]) for k in hits},
                {k: digest(objects[k]) for k in misses},
                clients=args.clients,
                seconds=args.seconds,
                miss_share=args.miss_share,
                seed=args.seed,
            )
        )
        total, idle = (a - b for a, b in zip(machine_ticks(), ticks_before, strict=True))
        cpu = {
            "serve": process_cpu(serve.pid) - cpu_before["serve"],
            "origin": process_cpu(origin.pid) - cpu_before["origin"],
            "s3": process_cpu(s3.process.pid if s3.process else 0) - cpu_before["s3"],
            "viewers": process_cpu(os.getpid()) - cpu_before["viewers"],
        }

        def stored(key: str) -> bytes | None:
            try:
                return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            except client.exceptions.NoSuchKey:
                return None

        drained = time.monotonic()
        lost = lost_copies(stored, report.missed, {k: digest(v) for k, v in objects.items()})
        drained = time.monotonic() - drained
        cores = os.cpu_count() or 1
        print(f"clients {args.clients}, {args.seconds:.0f} s, serve workers {args.workers}")
        print(report.summary())
        print(
            f"misses copied: {len(report.missed) - len(lost)} of {len(report.missed)} "
            f"(lost {len(lost)}; the queue drained {drained:.1f} s after the run)"
        )
        print(
            "CPU seconds during the run: "
            + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
            + f"; machine busy {(1 - idle / total) * cores:.2f} of {cores} cores"
        )
        for error in report.errors[:10]:
            print("error:", error)
        for problem in lost[:10]:
            print("lost:", problem)
        tracebacks = log.read_text(errors="replace").count("Traceback")
        print(f"serve log: {tracebacks} traceback(s)")
        if report.errors or lost or tracebacks:
            sys.exit(1)
    finally:
        if serve is not None:
            serve.send_signal(signal.SIGTERM)
            serve.wait(30)
        if origin is not None:
            origin.terminate()
            origin.wait(10)
        s3.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
