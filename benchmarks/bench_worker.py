"""One measured transfer, run by ``copy_bench.py`` in its own process.

Each variant runs in a fresh interpreter so that its peak RSS and CPU time can be read from the
kernel (``wait4``) for that process alone, and so that no two variants share a GIL. Imports and
client set-up happen before the clock starts; the transfer's seconds are printed as one JSON
line on stdout::

    python benchmarks/bench_worker.py engine --url URL --endpoint URL --bucket B --key K ...

S3 credentials come from the environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import urllib3

MiB = 1024 * 1024
READ_CHUNK = MiB
"""Bytes per read of the plain clients (the origin response, the temp file)."""

Measurement = dict[str, Any]


def rss_kib() -> int:
    """This process's resident set size now, in KiB (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def plain_s3_client(endpoint: str) -> Any:
    """A boto3 S3 client as a user would create it: defaults plus the endpoint."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def get_stream(url: str) -> urllib3.BaseHTTPResponse:
    """An unread GET response for ``url`` (raw bytes, no content decoding)."""
    response = urllib3.PoolManager().request(
        "GET", url, preload_content=False, decode_content=False
    )
    if response.status != 200:
        raise RuntimeError(f"GET {url}: HTTP {response.status}")
    return response


def timed(action: Callable[[], Measurement]) -> Measurement:
    """Run ``action`` and add its wall time and the RSS before it to what it returns."""
    baseline = rss_kib()
    started = time.perf_counter()
    measured = action()
    measured["seconds"] = time.perf_counter() - started
    measured["rss_before_kib"] = baseline
    return measured


# --- variants ---------------------------------------------------------------------------------


def read_only(args: argparse.Namespace) -> Measurement:
    """GET the object from the origin and discard it (one stream, or N parallel ranges)."""
    pool = urllib3.PoolManager(maxsize=max(1, args.concurrency))

    def read_range(first: int, last: int) -> int:
        headers = {"Range": f"bytes={first}-{last}"} if args.concurrency > 1 else {}
        response = pool.request(
            "GET", args.url, headers=headers, preload_content=False, decode_content=False
        )
        buffer = bytearray(READ_CHUNK)
        received = 0
        while count := response.readinto(buffer):
            received += count
        response.release_conn()
        return received

    def run() -> Measurement:
        if args.concurrency <= 1:
            return {"bytes": read_range(0, args.size - 1)}
        step = args.part_size
        ranges = [(s, min(s + step, args.size) - 1) for s in range(0, args.size, step)]
        with ThreadPoolExecutor(args.concurrency) as workers:
            total = sum(workers.map(lambda r: read_range(*r), ranges))
        return {"bytes": total}

    return timed(run)


def write_only(args: argparse.Namespace) -> Measurement:
    """Upload the source file's bytes (from the page cache) with the engine's own Bucket ops:
    CreateMultipartUpload, ``concurrency`` parallel UploadPart with CRC32C, Complete."""
    from backorigin.config.models import BucketConfig
    from backorigin.transfer.bucket import Bucket, make_s3_client
    from backorigin.transfer.digest import crc32c
    from backorigin.transfer.plan import plan_parts

    config = BucketConfig(name=args.bucket, endpoint_url=args.endpoint, region="us-east-1")
    bucket = Bucket(make_s3_client(config, max_pool_connections=args.concurrency + 4), args.bucket)
    fd = os.open(args.source, os.O_RDONLY)

    def run() -> Measurement:
        upload_id = bucket.create_upload(args.key, {})

        def send(number: int, start: int, stop: int) -> tuple[int, str, bytes]:
            data = os.pread(fd, stop - start, start)
            crc = crc32c(data).to_bytes(4, "big")
            return number, bucket.upload_part(args.key, upload_id, number, data, crc), crc

        parts = plan_parts(args.size, args.part_size)
        with ThreadPoolExecutor(args.concurrency) as workers:
            done = list(workers.map(lambda p: send(p.number, p.start, p.stop), parts))
        bucket.complete_new(args.key, upload_id, {n: (etag, crc) for n, etag, crc in done})
        return {"bytes": args.size, "parts": len(parts)}

    try:
        return timed(run)
    finally:
        os.close(fd)


def engine(args: argparse.Namespace) -> Measurement:
    """backorigin's CopyEngine, configured as ``backorigin fetch`` would be."""
    from backorigin.config import load_config
    from backorigin.transfer import CopyEngine

    config = load_config(
        {
            "bucket": {
                "name": args.bucket,
                "endpoint_url": args.endpoint,
                "region": "us-east-1",
                "prefix": args.prefix,
            },
            "origins": [{"name": "web", "type": "http", "base_url": args.origin}],
            "copy": {"part_size": args.part_size, "concurrency": args.concurrency},
        }
    )
    copier = CopyEngine(config)

    def run() -> Measurement:
        result = copier.copy(args.origin_key)
        if result.outcome.value != "copied":
            raise RuntimeError(f"copy ended {result.outcome.value}: {result.reason}")
        return {"bytes": result.bytes, "engine_seconds": result.seconds}

    try:
        return timed(run)
    finally:
        copier.close()


def naive(args: argparse.Namespace) -> Measurement:
    """(a) GET the whole object into a temp file, then ``upload_file`` it (boto3 defaults)."""
    s3 = plain_s3_client(args.endpoint)

    def run() -> Measurement:
        with tempfile.NamedTemporaryFile(dir=args.tmpdir, prefix="naive-") as spool:
            started = time.perf_counter()
            response = get_stream(args.url)
            shutil.copyfileobj(response, spool, READ_CHUNK)
            response.release_conn()
            spool.flush()
            downloaded = time.perf_counter()
            s3.upload_file(spool.name, args.bucket, args.key)
            uploaded = time.perf_counter()
            written = spool.tell()
        return {
            "bytes": written,
            "phases": {"download": downloaded - started, "upload": uploaded - downloaded},
        }

    return timed(run)


def streaming(args: argparse.Namespace) -> Measurement:
    """(b) ``upload_fileobj`` fed the origin's urllib3 response (boto3 defaults)."""
    s3 = plain_s3_client(args.endpoint)

    def run() -> Measurement:
        response = get_stream(args.url)
        s3.upload_fileobj(response, args.bucket, args.key)
        response.release_conn()
        return {"bytes": args.size}

    return timed(run)


VARIANTS: dict[str, Callable[[argparse.Namespace], Measurement]] = {
    "read": read_only,
    "write": write_only,
    "engine": engine,
    "naive": naive,
    "stream": streaming,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--url", help="the object's URL at the origin")
    parser.add_argument("--origin", help="the origin's base URL (engine)")
    parser.add_argument("--origin-key", help="the object's key at the origin (engine)")
    parser.add_argument("--endpoint", help="S3 endpoint URL")
    parser.add_argument("--bucket", help="S3 bucket")
    parser.add_argument("--key", help="S3 key to write")
    parser.add_argument("--prefix", default="", help="bucket prefix (engine)")
    parser.add_argument("--source", help="the source file (write)")
    parser.add_argument("--tmpdir", help="where (a) spools the object")
    parser.add_argument("--size", type=int, required=True, help="object size in bytes")
    parser.add_argument("--part-size", type=int, default=16 * MiB)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    measured = VARIANTS[args.variant](args)
    if measured["bytes"] != args.size:
        raise SystemExit(f"moved {measured['bytes']} bytes, expected {args.size}")
    json.dump(measured, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
