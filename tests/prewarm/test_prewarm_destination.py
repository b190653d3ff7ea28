"""Prewarm asks S3 what it holds with one listing per batch of keys, not a HEAD per key."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from backorigin.adapters import register_adapter
from backorigin.config import Config, load_config
from backorigin.prewarm import Job, LocalPrewarm
from backorigin.prewarm.destination import DestinationIndex
from backorigin.prewarm.local import Finding
from backorigin.testing.memory import MemoryAdapter
from backorigin.transfer import CopyEngine, CopyOutcome
from backorigin.transfer.bucket import Bucket

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


class Counted:
    """The S3 operations a boto3 client makes, counted through its own event hooks."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        client.meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls[model.name] += 1


def test_a_batch_costs_one_listing_and_one_put_per_missing_key(
    bucket: str, seaweedfs: Any, s3_client: Any
) -> None:
    config = make_config(bucket, seaweedfs.url)
    origin = MemoryAdapter(config.origins[0])  # type: ignore[arg-type]
    keys = [f"site/{i:03d}.txt" for i in range(40)]
    for key in keys:
        origin.put(key, key.encode())
    for key in keys[:10]:  # already in S3
        s3_client.put_object(Bucket=bucket, Key=key, Body=key.encode())
    engine = CopyEngine(config, s3_client=s3_client, adapters={"primary": origin})
    counted = Counted(s3_client)
    tally = LocalPrewarm(engine, concurrency=4).run(Job(key) for key in keys)
    assert tally.counts == Counter({CopyOutcome.COPIED: 30, CopyOutcome.EXISTS: 10})
    assert counted.calls == Counter({"ListObjectsV2": 1, "PutObject": 30})
    stored = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"] for o in stored) == keys


def test_without_the_listing_every_key_is_asked(
    bucket: str, seaweedfs: Any, s3_client: Any
) -> None:
    config = make_config(bucket, seaweedfs.url)
    origin = MemoryAdapter(config.origins[0])  # type: ignore[arg-type]
    keys = [f"k/{i}" for i in range(5)]
    for key in keys:
        origin.put(key, b"x")
    engine = CopyEngine(config, s3_client=s3_client, adapters={"primary": origin})
    counted = Counted(s3_client)
    tally = LocalPrewarm(engine, concurrency=2, list_destination=False).run(
        Job(key) for key in keys
    )
    assert tally.counts == Counter({CopyOutcome.COPIED: 5})
    assert counted.calls == Counter({"HeadObject": 5, "PutObject": 5})


def test_a_listed_job_whose_copy_is_stale_is_still_compared(
    bucket: str, seaweedfs: Any, s3_client: Any
) -> None:
    """A key the listing shows present is HEADed only when its provenance must be compared."""
    config = make_config(bucket, seaweedfs.url)
    origin = MemoryAdapter(config.origins[0])  # type: ignore[arg-type]
    origin.put("a.txt", b"new content")
    origin.put("b.txt", b"bbb")
    s3_client.put_object(Bucket=bucket, Key="a.txt", Body=b"old")
    engine = CopyEngine(config, s3_client=s3_client, adapters={"primary": origin})
    counted = Counted(s3_client)
    jobs = [Job(info.key, "primary", info) for info in origin.list("")]
    tally = LocalPrewarm(engine, concurrency=2).run(jobs)
    assert tally.counts == Counter({Finding.STALE: 1, CopyOutcome.COPIED: 1})
    assert counted.calls == Counter({"ListObjectsV2": 1, "HeadObject": 1, "PutObject": 1})
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
