"""Prewarm asks S3 what it holds with one listing per batch of keys, not a HEAD per key."""

from __future__ import annotations

import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from backorigin.adapters import register_adapter
from backorigin.config import Config, load_config
from backorigin.prewarm import Job, LocalPrewarm
from backorigin.prewarm.destination import DestinationIndex
from backorigin.prewarm.local import Finding
from backorigin.testing.memory import MemoryAdapter
from backorigin.transfer import CopyEngine, CopyOutcome
from backorigin.transfer.bucket import Bucket, make_s3_client
from net_support import Forwarded, TamperingProxy

pytestmark = pytest.mark.usefixtures("s3_env")


@pytest.fixture(autouse=True)
def memory_type(clean_registry: None) -> None:
    register_adapter("memory", MemoryAdapter)


def make_config(bucket: str, endpoint: str) -> Config:
    return load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{endpoint}', region: us-east-1}}\n"
        "origins:\n  - {name: primary, type: memory}\n"
        "copy: {part_size: 5MiB, concurrency: 2}\n"
    )


def operation(forwarded: Forwarded) -> str:
    """The S3 operation a request is, told from its method and query (what this file sends)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(forwarded.path).query)
    if forwarded.method == "GET":
        return "ListObjectsV2" if "list-type" in query else "GetObject"
    if forwarded.method == "PUT":
        return "UploadPart" if "uploadId" in query else "PutObject"
    return {"HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(forwarded.method, "other")


class Counted:
    """An engine whose S3 requests go through a proxy that counts them by operation, on the
    wire, whichever HTTP stack sends them (botocore, or the CRT's for PutObject)."""

    def __init__(
        self, config: Config, origin: MemoryAdapter, seaweedfs: Any, credentials: dict[str, str]
    ) -> None:
        self.proxy = TamperingProxy(seaweedfs.url, lambda method, path, body: body).__enter__()
        client = make_s3_client(
            config.bucket.model_copy(update={"endpoint_url": self.proxy.url}),
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        )
        self.engine = CopyEngine(config, s3_client=client, adapters={"primary": origin})

    @property
    def calls(self) -> Counter[str]:
        return Counter(operation(f) for f in self.proxy.forwarded)

    def close(self) -> None:
        self.engine.close()
        self.proxy.__exit__()


@pytest.fixture
def counted(
    bucket: str, seaweedfs: Any, s3_credentials: dict[str, str]
) -> Iterator[Callable[[MemoryAdapter], Counted]]:
    made: list[Counted] = []

    def build(origin: MemoryAdapter) -> Counted:
        made.append(Counted(make_config(bucket, seaweedfs.url), origin, seaweedfs, s3_credentials))
        return made[-1]

    yield build
    for each in made:
        each.close()


def test_a_batch_costs_one_listing_and_one_put_per_missing_key(
    bucket: str, seaweedfs: Any, s3_client: Any, counted: Callable[[MemoryAdapter], Counted]
) -> None:
    config = make_config(bucket, seaweedfs.url)
    origin = MemoryAdapter(config.origins[0])  # type: ignore[arg-type]
    keys = [f"site/{i:03d}.txt" for i in range(40)]
    for key in keys:
        origin.put(key, key.encode())
    for key in keys[:10]:  # already in S3
        s3_client.put_object(Bucket=bucket, Key=key, Body=key.encode())
    counting = counted(origin)
    tally = LocalPrewarm(counting.engine, concurrency=4).run(Job(key) for key in keys)
    assert tally.counts == Counter({CopyOutcome.COPIED: 30, CopyOutcome.EXISTS: 10})
    assert counting.calls == Counter({"ListObjectsV2": 1, "PutObject": 30})
    stored = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"] for o in stored) == keys


def test_without_the_listing_every_key_is_asked(
    bucket: str, seaweedfs: Any, s3_client: Any, counted: Callable[[MemoryAdapter], Counted]
) -> None:
    config = make_config(bucket, seaweedfs.url)
    origin = MemoryAdapter(config.origins[0])  # type: ignore[arg-type]
    keys = [f"k/{i}" for i in range(5)]
    for key in keys:
        origin.put(key, b"x")
    counting = counted(origin)
    tally = LocalPrewarm(counting.engine, concurrency=2, list_destination=False).run(
        Job(key) for key in keys
    )
    assert tally.counts == Counter({CopyOutcome.COPIED: 5})
    assert counting.calls == Counter({"HeadObject": 5, "PutObject": 5})


def test_a_listed_job_whose_copy_is_stale_is_still_compared(
    bucket: str, seaweedfs: Any, s3_client: Any, counted: Callable[[MemoryAdapter], Counted]
) -> None:
    """A key the listing shows present is HEADed only when its provenance must be compared."""
    config = make_config(bucket, seaweedfs.url)
    origin = MemoryAdapter(config.origins[0])  # type: ignore[arg-type]
    origin.put("a.txt", b"new content")
    origin.put("b.txt", b"bbb")
    s3_client.put_object(Bucket=bucket, Key="a.txt", Body=b"old")
    counting = counted(origin)
    jobs = [Job(info.key, "primary", info) for info in origin.list("")]
    tally = LocalPrewarm(counting.engine, concurrency=2).run(jobs)
    assert tally.counts == Counter({Finding.STALE: 1, CopyOutcome.COPIED: 1})
    assert counting.calls == Counter({"ListObjectsV2": 1, "HeadObject": 1, "PutObject": 1})
    body = s3_client.get_object(Bucket=bucket, Key="a.txt")["Body"].read()
    assert body == b"old"  # never overwritten


def test_a_listing_longer_than_the_heads_it_saves_is_abandoned(
    bucket: str, seaweedfs: Any, s3_client: Any
) -> None:
    for i in range(30):
        s3_client.put_object(Bucket=bucket, Key=f"other/{i:02d}", Body=b"x")
    roomy = DestinationIndex(Bucket(s3_client, bucket))
    assert roomy.lookup(["a", "other/05"]) == {"a": None, "other/05": 1}
    assert roomy.listings == 1
    # Allowed fewer entries than the bucket lists: the batch is left to HEADs, and after
    # three such batches in a row the listing is not tried again.
    tight = DestinationIndex(Bucket(s3_client, bucket), budget_factor=0, allowance=10)
    for _ in range(3):
        assert tight.lookup(["a", "other/05"]) is None
    assert (tight.fallbacks, tight.enabled) == (3, False)
    assert tight.lookup(["a"]) is None
    assert tight.fallbacks == 3  # not even tried
