"""What single-flight means for a small object: 100 concurrent misses of one key, counted.

A small object (one that fits one PutObject) is copied without a lease: the create-only
``If-None-Match: *`` write lets exactly one copier store it. So concurrent misses of one small
key may each read it from the origin; this measures how many do. Each miss is one
``CopyEngine.copy`` call, as the fetcher makes one per copy job, all released at once by a
barrier (once as the fetcher calls it, once told the key is absent as prewarm calls it after a
listing), against a local HTTP origin and SeaweedFS behind counting proxies
(``counting_proxy.py``). It prints the outcomes, the origin's requests (GET, HEAD) and S3's
requests by kind, and checks that S3 holds exactly one object with the origin's bytes.

Example::

    .venv/bin/python benchmarks/single_flight_bench.py --misses 100 --size 64KiB --rounds 3
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from counting_proxy import CountingProxy, s3_kind
from prewarm_bench import ACCESS_KEY, SECRET_KEY, Origin, make_dataset, s3_client, write_config

from backorigin.config import load_config
from backorigin.config.units import parse_size
from backorigin.local.embedded_s3 import EmbeddedS3
from backorigin.transfer import CopyEngine
from backorigin.transfer.bucket import make_s3_client


def one_round(
    number: int,
    *,
    seaweed: EmbeddedS3,
    origin: Origin,
    key: str,
    data: bytes,
    misses: int,
    absent: bool,
) -> str:
    """Release ``misses`` copies of ``key`` at once; a line of counts.

    With ``absent``, every copy is told the key is absent (as prewarm tells it after a
    listing), so none asks S3 first: the worst case for origin reads.
    """
    s3 = s3_client(seaweed.url)
    bucket = f"single-flight-{number}-{os.getpid()}"
    s3.create_bucket(Bucket=bucket)
    origin_proxy = CountingProxy(origin.url)
    s3_proxy = CountingProxy(seaweed.url, s3_kind)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            config_path = write_config(
                Path(scratch) / "c.yaml", bucket, s3_proxy.url.rstrip("/"), origin_proxy.url
            )
            config = load_config(str(config_path))
        client = make_s3_client(config.bucket, max_pool_connections=misses + 4)
        engine = CopyEngine(config, s3_client=client)
        barrier = threading.Barrier(misses)
        outcomes: Counter[str] = Counter()
        lock = threading.Lock()

        def miss() -> None:
            barrier.wait()
            result = engine.copy(key, absent=absent)
            with lock:
                outcomes[result.outcome.value] += 1

        threads = [threading.Thread(target=miss) for _ in range(misses)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        engine.close()
        at_origin, at_s3 = origin_proxy.take(), s3_proxy.take()
    finally:
        origin_proxy.stop()
        s3_proxy.stop()
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    exact = len(listed) == 1 and hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
    s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_bucket(Bucket=bucket)
    path = "told absent" if absent else "fetcher path"
    return (
        f"round {number}, {path}: {misses} misses -> outcomes {dict(outcomes)}; origin GET "
        f"{at_origin['GET']}, HEAD {at_origin['HEAD']}; S3 {dict(sorted(at_s3.items()))}; "
        f"S3 holds exactly one object with the origin's bytes: {'yes' if exact else 'NO'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--misses", type=int, default=100)
    parser.add_argument("--size", type=parse_size, default=64 * 1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    with tempfile.TemporaryDirectory(prefix="single-flight-") as workdir:
        dataset = make_dataset(Path(workdir), 1, args.size)
        key = dataset.keys[0]
        data = (Path(workdir) / "origin" / key).read_bytes()
        origin = Origin(dataset.routes_file)
        seaweed = EmbeddedS3(access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        seaweed.start()
        try:
            for number in range(1, args.rounds + 1):
                for absent in (False, True):
                    line = one_round(
                        number,
                        seaweed=seaweed,
                        origin=origin,
                        key=key,
                        data=data,
                        misses=args.misses,
                        absent=absent,
                    )
                    print(line, flush=True)
        finally:
            seaweed.stop()
            origin.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
