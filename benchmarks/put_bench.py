"""Small PutObjects through botocore and through the CRT's S3 client, side by side.

The copy engine sends every one-request object with :meth:`Bucket.put_new`; this times that
call with ``crt_puts=False`` (botocore's ``put_object``) and ``crt_puts=True`` (the CRT's S3
client, :mod:`backorigin.transfer.crt_put`), alternating round by round, into one local
SeaweedFS with S3 authentication on. Each round sends N objects from T threads and reports
puts per second and the process's CPU per put (every thread, the CRT's own included).

Nothing here asserts a timing: it prints a Markdown table.

Example::

    .venv/bin/python benchmarks/put_bench.py --objects 2000 --size 64KiB --threads 16 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from backorigin.config.models import BucketConfig
from backorigin.config.units import parse_size
from backorigin.local.embedded_s3 import EmbeddedS3
from backorigin.transfer.bucket import Bucket, make_s3_client
from backorigin.transfer.digest import crc32c

ACCESS_KEY = "put-bench-key"
SECRET_KEY = "put-bench-secret-0123456789abcdef"  # noqa: S105 - a throwaway local identity
BUCKET = "put-bench"
STACKS = {"botocore": False, "crt": True}


def one_round(bucket: Bucket, stack: str, index: int, objects: int, data: bytes, threads: int):
    crc = crc32c(data).to_bytes(4, "big")
    attributes = {"ContentType": "application/octet-stream", "Metadata": {"bench": "put"}}

    def put(number: int) -> None:
        bucket.put_new(f"{stack}/{index}/{number}", data, attributes, crc32c=crc)

    with ThreadPoolExecutor(threads) as pool:
        cpu, wall = time.process_time(), time.perf_counter()
        list(pool.map(put, range(objects)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return objects / wall, cpu * 1000 / objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--size", default="64KiB")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = os.urandom(parse_size(args.size))
    results: dict[str, list[tuple[float, float]]] = {stack: [] for stack in STACKS}
    with EmbeddedS3(access_key=ACCESS_KEY, secret_key=SECRET_KEY) as server:
        config = BucketConfig(name=BUCKET, endpoint_url=server.url, region="us-east-1")
        client = make_s3_client(
            config,
            max_pool_connections=args.threads + 4,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        client.create_bucket(Bucket=BUCKET)
        buckets = {stack: Bucket(client, BUCKET, crt_puts=crt) for stack, crt in STACKS.items()}
        for stack, bucket in buckets.items():  # warm: connections, the CRT client, its probe
            one_round(bucket, stack, -1, args.threads, data, args.threads)
        for index in range(args.rounds):
            order = list(STACKS) if index % 2 == 0 else list(reversed(STACKS))
            for stack in order:
                rate, cpu = one_round(
                    buckets[stack], stack, index, args.objects, data, args.threads
                )
                results[stack].append((rate, cpu))
                print(f"round {index + 1} {stack}: {rate:.0f} puts/s, {cpu:.3f} CPU-ms/put")
    print(
        f"\n{args.objects} PutObjects of {args.size} from {args.threads} threads into SeaweedFS, "
        f"{args.rounds} round(s), medians\n"
    )
    print("| stack | puts/s | CPU ms per put |")
    print("|---|---|---|")
    for stack, rows in results.items():
        rate = statistics.median(r for r, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        print(f"| {stack} | {rate:.0f} | {cpu:.3f} |")


if __name__ == "__main__":
    main()
