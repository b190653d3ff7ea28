"""The backorigin demo: a legacy web server, `backorigin serve`, and a lazy migration.

Starts a local origin holding the files in ``site/`` plus a generated multi-MB binary, runs
``backorigin serve`` on its embedded S3 server, requests every object twice, and prints where
each answer came from and what the bucket holds afterwards. Run it with ``make demo``.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
import urllib3
from botocore.config import Config as BotoConfig

from backorigin.testing.http_origin import HttpOriginServer
from backorigin.testing.servers import free_port

SITE = Path(__file__).resolve().parent / "site"
BINARY_KEY = "downloads/dataset.bin"
BINARY_SIZE = 12 * 1024 * 1024
BUCKET = "demo-media"


def binary() -> bytes:
    """A deterministic, incompressible multi-MB file (multipart territory)."""
    return hashlib.shake_256(b"backorigin demo").digest(BINARY_SIZE)


def start_serve(config: Path, port: int) -> tuple[subprocess.Popen[str], str, str, str]:
    """Run ``backorigin serve``; returns the process and its embedded S3 endpoint and keys."""
    process = subprocess.Popen(  # noqa: S603 - this interpreter running backorigin
        [sys.executable, "-m", "backorigin.cli", "serve", str(config), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    embedded = re.compile(r"embedded S3 at (\S+) \(access key (\S+), secret key (\S+)\)")
    deadline = time.monotonic() + 60
    endpoint = access = secret = ""
    for line in process.stderr:
        match = embedded.search(line)
        if match:
            endpoint, access, secret = match.groups()
        if "backorigin serving" in line:
            break
        if time.monotonic() > deadline:
            break
    # Keep draining its log so that a full pipe never blocks the server.
    threading.Thread(target=lambda: [None for _ in process.stderr or []], daemon=True).start()
    # Wait until the port answers. The probe asks for a key the edge refuses (400), so it
    # reaches no origin and copies nothing; "/" would fetch the default root object.
    for _ in range(100):
        try:
            urllib3.request(
                "HEAD", f"http://127.0.0.1:{port}/.backorigin/ready", retries=False, timeout=1
            )
            break
        except urllib3.exceptions.HTTPError:
            time.sleep(0.1)
    return process, endpoint, access, secret


def fetch(url: str) -> tuple[str, int, float, bytes]:
    started = time.monotonic()
    response = urllib3.request("GET", url, retries=False, timeout=60)
    ms = (time.monotonic() - started) * 1000
    source = "origin" if response.headers.get("x-backorigin") == "origin" else "s3"
    return source, response.status, ms, response.data


def wait_until_in_s3(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = urllib3.request("HEAD", url, retries=False, timeout=10)
        if response.headers.get("x-backorigin") != "origin":
            return
        time.sleep(0.2)
    raise SystemExit(f"{url} was not copied into S3 within {timeout:.0f}s")


def main() -> int:
    files = {
        p.relative_to(SITE).as_posix(): p.read_bytes()
        for p in sorted(SITE.rglob("*"))
        if p.is_file()
    }
    files[BINARY_KEY] = binary()
    with HttpOriginServer() as origin, tempfile.TemporaryDirectory() as tmp:
        for key, data in files.items():
            kind = mimetypes.guess_type(key)[0] or "application/octet-stream"
            origin.put(key, data, headers={"Content-Type": kind})
        config = Path(tmp) / "backorigin.yaml"
        config.write_text(
            f"bucket: {{name: {BUCKET}}}\n"
            "origins:\n"
            f"  - {{name: legacy-web, type: http, base_url: '{origin.url}'}}\n"
            "copy: {part_size: 5MiB, concurrency: 4}\n"
        )
        port = free_port()
        process, endpoint, access, secret = start_serve(config, port)
        base = f"http://127.0.0.1:{port}/"
        try:
            rows = []
            for key, data in files.items():
                first = fetch(base + key)
                wait_until_in_s3(base + key)
                second = fetch(base + key)
                ok = first[3] == data and second[3] == data
                rows.append((key, first, second, len(data), ok))
            print(
                f"\n{'key':<24} {'1st':<8} {'2nd':<8} {'bytes':>10} {'1st ms':>8} "
                f"{'2nd ms':>8}  body"
            )
            for key, first, second, size, ok in rows:
                print(
                    f"{key:<24} {first[0]:<8} {second[0]:<8} {size:>10} {first[2]:>8.1f} "
                    f"{second[2]:>8.1f}  {'ok' if ok else 'WRONG'}"
                )
            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id=access,
                aws_secret_access_key=secret,
                region_name="us-east-1",
                config=BotoConfig(s3={"addressing_style": "path"}),
            )
            listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
            print(f"\nbucket {BUCKET}:")
            for item in listed:
                print(f"  {item['Key']:<40} {item['Size']:>10}")
            good = all(row[4] for row in rows) and all(
                row[1][0] == "origin" and row[2][0] == "s3" for row in rows
            )
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        print(f"\nserve stopped (exit status {process.returncode})")
    return 0 if good and process.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
