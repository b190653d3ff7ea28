"""The copy engine against a real S3 server (SeaweedFS) with in-memory and HTTP origins."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from backorigin.adapters import register_adapter
from backorigin.adapters.read import RawGet
from backorigin.config import Config, load_config
from backorigin.keys import RESERVED_PREFIX
from backorigin.testing.memory import MemoryAdapter
from backorigin.transfer import CopyEngine, CopyOutcome
from backorigin.transfer.plan import MAX_PARTS, part_size_for, plan_parts
from backorigin.types import GetOptions, ObjectInfo

MiB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("s3_env")


@pytest.fixture(autouse=True)
def memory_type(clean_registry: None) -> None:
    register_adapter("memory", MemoryAdapter)


def make_config(
    bucket: str, endpoint: str, *, origins: tuple[str, ...] = ("primary",), **copy: Any
) -> Config:
    routes = ""
    if len(origins) > 1:
        routes = f"routes:\n  - {{origin: {origins[0]}, fallback: [{', '.join(origins[1:])}]}}\n"
    settings = {"part_size": "5MiB", "concurrency": 3, "lease_ttl": "30s", **copy}
    copy_yaml = ", ".join(f"{k}: {v}" for k, v in settings.items())
    return load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{endpoint}', region: us-east-1}}\n"
        "origins:\n"
        + "".join(f"  - {{name: {name}, type: memory}}\n" for name in origins)
        + routes
        + f"copy: {{{copy_yaml}}}\n"
    )


class Engine:
    """An engine over memory origins, plus the S3 view a test checks."""

    def __init__(self, config: Config, s3: Any, **kwargs: Any) -> None:
        self.config = config
        self.s3 = s3
        self.origins = {o.name: MemoryAdapter(o) for o in config.origins}  # type: ignore[arg-type]
        self.engine = CopyEngine(config, s3_client=s3, adapters=self.origins, **kwargs)

    @property
    def bucket(self) -> str:
        assert self.config.bucket.name
        return self.config.bucket.name

    def stored(self, key: str) -> bytes | None:
        try:
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def visible_keys(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return sorted(o["Key"] for o in listed if not o["Key"].startswith(RESERVED_PREFIX))

    def open_uploads(self) -> list[str]:
        return [
            u["Key"] for u in self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        ]

    def leases(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=RESERVED_PREFIX)
        return [o["Key"] for o in listed.get("Contents", [])]


@pytest.fixture
def engine(bucket: str, seaweedfs: Any, s3_client: Any) -> Engine:
    return Engine(make_config(bucket, seaweedfs.url), s3_client)


def payload(size: int, seed: int = 0) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


# --- planning ------------------------------------------------------------------------------


def test_part_size_grows_to_fit_ten_thousand_parts() -> None:
    assert part_size_for(100 * MiB, 16 * MiB) == 16 * MiB
    assert part_size_for(1, 1) == 5 * MiB
    big = 5 * 1024**4
    size = part_size_for(big, 16 * MiB)
    assert size % MiB == 0
    assert len(plan_parts(big, size)) <= MAX_PARTS
    assert size <= 5 * 1024**3


def test_plan_covers_the_object_exactly() -> None:
    parts = plan_parts(12 * MiB + 7, 5 * MiB)
    assert [p.number for p in parts] == [1, 2, 3]
    assert parts[0].start == 0
    assert parts[-1].stop == 12 * MiB + 7
    assert all(a.stop == b.start for a, b in itertools.pairwise(parts))


# --- copying -------------------------------------------------------------------------------


def test_small_object_with_all_metadata(engine: Engine) -> None:
    body = gzip.compress(b"hello world " * 100)
    info = engine.origins["primary"].put(
        "docs/a file+1.txt",
        body,
        content_type="text/plain; charset=utf-8",
        content_encoding="gzip",
        cache_control="public, max-age=60",
        content_disposition='attachment; filename="a.txt"',
        content_language="en",
        expires="Wed, 21 Oct 2037 07:28:00 GMT",
        metadata={"owner": "team-a"},
    )
    result = engine.engine.copy("docs/a file+1.txt")
    assert result.outcome is CopyOutcome.COPIED, result.reason
    assert result.bytes == len(body)
    assert result.origin == "primary"
    head = engine.s3.head_object(Bucket=engine.bucket, Key="docs/a file+1.txt")
    assert engine.stored("docs/a file+1.txt") == body  # stored compressed, as-is
    assert head["ContentType"] == "text/plain; charset=utf-8"
    assert head["ContentEncoding"] == "gzip"
    assert head["CacheControl"] == "public, max-age=60"
    assert head["ContentDisposition"] == 'attachment; filename="a.txt"'
    assert head["ContentLanguage"] == "en"
    assert "2037" in head["ResponseMetadata"]["HTTPHeaders"]["expires"]
    meta = head["Metadata"]
    assert meta["owner"] == "team-a"
    assert meta["backorigin-origin"] == "primary"
    assert meta["backorigin-origin-version"] == info.version
    assert meta["backorigin-origin-etag"] == info.etag
    assert meta["backorigin-copied-at"].startswith("20")
    assert engine.leases() == []


def test_second_copy_reports_exists(engine: Engine) -> None:
    engine.origins["primary"].put("k", b"data")
    assert engine.engine.copy("k").outcome is CopyOutcome.COPIED
    assert engine.engine.copy("k").outcome is CopyOutcome.EXISTS


def test_an_object_already_in_s3_is_never_overwritten(engine: Engine) -> None:
    engine.s3.put_object(Bucket=engine.bucket, Key="k", Body=b"newer, written by someone else")
    engine.origins["primary"].put("k", b"older origin copy")
    assert engine.engine.copy("k").outcome is CopyOutcome.EXISTS
    assert engine.stored("k") == b"newer, written by someone else"


def test_zero_byte_object(engine: Engine) -> None:
    engine.origins["primary"].put("empty", b"")
    result = engine.engine.copy("empty")
    assert result.outcome is CopyOutcome.COPIED, result.reason
    assert engine.stored("empty") == b""


def test_multipart_object(engine: Engine) -> None:
    body = payload(12 * MiB + 12345)
    engine.origins["primary"].put("big.bin", body, content_type="application/octet-stream")
    result = engine.engine.copy("big.bin")
    assert result.outcome is CopyOutcome.COPIED, result.reason
    assert result.bytes == len(body)
    assert engine.stored("big.bin") == body
    head = engine.s3.head_object(Bucket=engine.bucket, Key="big.bin")
    assert head["ContentType"] == "application/octet-stream"
    assert head["Metadata"]["backorigin-origin"] == "primary"
    assert engine.open_uploads() == []
    assert engine.leases() == []


def test_not_found(engine: Engine) -> None:
    result = engine.engine.copy("missing")
    assert result.outcome is CopyOutcome.NOT_FOUND
    assert engine.visible_keys() == []


def test_fallback_origins_are_tried_in_order(bucket: str, seaweedfs: Any, s3_client: Any) -> None:
    engine = Engine(make_config(bucket, seaweedfs.url, origins=("a", "b", "c")), s3_client)
    engine.origins["b"].put("k", b"from b")
    engine.origins["c"].put("k", b"from c")
    result = engine.engine.copy("k")
    assert (result.outcome, result.origin) == (CopyOutcome.COPIED, "b")
    assert engine.stored("k") == b"from b"


class _CountingBody:
    """A raw body that reports the bytes it delivers."""

    def __init__(self, body: Any, delivered: Callable[[int], None]) -> None:
        self.body = body
        self.delivered = delivered

    def readinto(self, buffer: memoryview) -> int:
        count = int(self.body.readinto(buffer))
        self.delivered(count)
        return count

    def close(self) -> None:
        self.body.close()


def count_reads(origin: MemoryAdapter) -> tuple[list[GetOptions], list[int]]:
    """Record every GET ``origin`` answers and every byte its bodies deliver."""
    asked: list[GetOptions] = []
    delivered: list[int] = []
    lock = threading.Lock()
    original = origin.get_once

    def get_once(key: str, options: GetOptions) -> RawGet:
        with lock:
            asked.append(options)
        raw = original(key, options)

        def add(count: int) -> None:
            with lock:
                delivered.append(count)

        return dataclasses.replace(raw, body=_CountingBody(raw.body, add))

    origin.get_once = get_once  # type: ignore[method-assign]
    return asked, delivered


def test_too_large_is_refused_before_reading(bucket: str, seaweedfs: Any, s3_client: Any) -> None:
    engine = Engine(make_config(bucket, seaweedfs.url, max_object_size="1MiB"), s3_client)
    origin = engine.origins["primary"]
    asked, delivered = count_reads(origin)
    origin.put("big", b"x" * (6 * MiB))
    result = engine.engine.copy("big")
    assert result.outcome is CopyOutcome.TOO_LARGE
    assert asked == []  # a HEAD described it
    # Told the key is absent, the engine lets a GET describe it, and reads none of its body.
    result = engine.engine.copy("big", absent=True)
    assert result.outcome is CopyOutcome.TOO_LARGE
    assert (len(asked), sum(delivered)) == (1, 0)
    assert engine.visible_keys() == []


def test_a_small_object_costs_one_origin_request(engine: Engine) -> None:
    origin = engine.origins["primary"]
    asked, delivered = count_reads(origin)
    heads: list[str] = []
    original_head = origin.head

    def head(key: str) -> ObjectInfo:
        heads.append(key)
        return original_head(key)

    origin.head = head  # type: ignore[method-assign]
    body = payload(64 * 1024, seed=3)
    origin.put("small", body)
    assert engine.engine.copy("small", absent=True).outcome is CopyOutcome.COPIED
    assert (len(asked), heads, sum(delivered)) == (1, [], len(body))
    assert engine.stored("small") == body


def test_reserved_keys_are_refused(engine: Engine) -> None:
    engine.origins["primary"].put(".backorigin/leases/x.json", b"{}")
    result = engine.engine.copy(".backorigin/leases/x.json")
    assert result.outcome is CopyOutcome.FAILED
    assert "reserved" in (result.reason or "")
    assert engine.visible_keys() == []


def test_invalid_key_fails_without_touching_anything(engine: Engine) -> None:
    result = engine.engine.copy("a/../b")
    assert result.outcome is CopyOutcome.FAILED
    assert "'..'" in (result.reason or "")


class LyingOrigin(MemoryAdapter):
    """States a checksum that does not match its bytes."""

    @staticmethod
    def lie(info: ObjectInfo) -> ObjectInfo:
        from backorigin.types import Checksums

        return dataclasses.replace(info, checksums=Checksums(md5=b"\x00" * 16))

    def head(self, key: str) -> ObjectInfo:
        return self.lie(super().head(key))

    def get_once(self, key: str, options: GetOptions) -> RawGet:
        raw = super().get_once(key, options)
        return dataclasses.replace(raw, info=self.lie(raw.info))


@pytest.mark.parametrize("absent", [False, True])
@pytest.mark.parametrize("size", [1000, 11 * MiB])
def test_a_lying_checksum_stores_nothing(
    bucket: str, seaweedfs: Any, s3_client: Any, size: int, absent: bool
) -> None:
    config = make_config(bucket, seaweedfs.url)
    origin = LyingOrigin(config.origins[0])  # type: ignore[arg-type]
    origin.put("k", payload(size))
    engine = CopyEngine(config, s3_client=s3_client, adapters={"primary": origin})
    result = engine.copy("k", absent=absent)
    assert result.outcome is CopyOutcome.FAILED
    assert "md5" in (result.reason or "")
    view = Engine(config, s3_client)
    assert view.visible_keys() == []
    assert view.open_uploads() == []
    assert view.leases() == []


class ChangingOrigin(MemoryAdapter):
    """Replaces the object with a new version after the first ranged read."""

    def get_once(self, key: str, options: GetOptions) -> RawGet:
        raw = super().get_once(key, options)
        if options.range is not None and options.range.start == 0:
            self.put(key, payload(11 * MiB, seed=99))
        return raw


def test_object_changed_mid_copy_stores_nothing(
    bucket: str, seaweedfs: Any, s3_client: Any
) -> None:
    config = make_config(bucket, seaweedfs.url, concurrency=1)
    origin = ChangingOrigin(config.origins[0])  # type: ignore[arg-type]
    origin.put("k", payload(11 * MiB))
    result = CopyEngine(config, s3_client=s3_client, adapters={"primary": origin}).copy("k")
    assert result.outcome is CopyOutcome.FAILED
    assert "changed" in (result.reason or "")
    view = Engine(config, s3_client)
    assert view.visible_keys() == []
    assert view.open_uploads() == []


def test_concurrent_copies_read_the_origin_once(engine: Engine) -> None:
    body = payload(11 * MiB)
    origin = engine.origins["primary"]
    origin.put("hot", body)
    _, delivered = count_reads(origin)
    original = origin.get_once

    def slow(key: str, options: GetOptions) -> RawGet:
        time.sleep(0.05)  # keep the winner busy long enough for everyone to collide
        return original(key, options)

    origin.get_once = slow  # type: ignore[method-assign]
    barrier = threading.Barrier(8)
    outcomes: list[CopyOutcome] = []

    def run() -> None:
        barrier.wait()
        outcomes.append(engine.engine.copy("hot").outcome)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(CopyOutcome.COPIED) == 1
    assert set(outcomes) <= {CopyOutcome.COPIED, CopyOutcome.IN_PROGRESS, CopyOutcome.EXISTS}
    # Every copier asked (the GET that describes the object), but only the winner read.
    assert sum(delivered) == len(body)
    assert engine.stored("hot") == body


def test_deadline_suspends_and_the_next_attempt_resumes(engine: Engine) -> None:
    body = payload(21 * MiB)
    engine.origins["primary"].put("slow", body)
    first = engine.engine.copy("slow", deadline=time.monotonic())
    assert first.outcome is CopyOutcome.FAILED
    assert "resumes" in (first.reason or "")
    assert engine.open_uploads() == ["slow"]
    assert engine.visible_keys() == []
    second = engine.engine.copy("slow")
    assert second.outcome is CopyOutcome.COPIED, second.reason
    assert second.resumed_parts >= 1
    assert engine.stored("slow") == body
    assert engine.open_uploads() == []


def test_an_expired_lease_is_taken_over(bucket: str, seaweedfs: Any, s3_client: Any) -> None:
    past = Engine(make_config(bucket, seaweedfs.url), s3_client, clock=lambda: time.time() - 3600)
    past.origins["primary"].put("k", b"abc")
    from backorigin.transfer.lease import Lease

    stale = Lease.acquire(past.engine.bucket, "", "k", ttl=30, clock=lambda: time.time() - 3600)
    assert stale is not None
    now = CopyEngine(past.config, s3_client=s3_client, adapters=past.origins)
    result = now.copy("k")
    assert result.outcome is CopyOutcome.COPIED, result.reason


def test_a_live_lease_means_in_progress(engine: Engine) -> None:
    body = payload(6 * MiB)  # two parts: a multipart copy, which takes the lease
    engine.origins["primary"].put("k", body)
    from backorigin.transfer.lease import Lease

    held = Lease.acquire(engine.engine.bucket, "", "k", ttl=30)
    assert held is not None
    assert engine.engine.copy("k").outcome is CopyOutcome.IN_PROGRESS
    assert engine.stored("k") is None
    held.release()
    assert engine.engine.copy("k").outcome is CopyOutcome.COPIED
    assert engine.stored("k") == body


def test_an_object_of_one_part_takes_no_lease(engine: Engine) -> None:
    """One PutObject needs no lease: its create-only write is the single-flight guard."""
    engine.origins["primary"].put("k", b"abc")
    from backorigin.transfer.lease import Lease

    held = Lease.acquire(engine.engine.bucket, "", "k", ttl=30)
    assert held is not None
    assert engine.engine.copy("k").outcome is CopyOutcome.COPIED
    assert engine.stored("k") == b"abc"
    held.release()
    assert engine.leases() == []
    assert engine.engine.copy("k").outcome is CopyOutcome.EXISTS


def test_racing_copies_of_a_small_object_store_exactly_one(engine: Engine) -> None:
    """Copiers racing on one small object may each read it; S3 holds one exact copy."""
    body = payload(100_000, seed=7)
    engine.origins["primary"].put("hot-small", body)
    barrier = threading.Barrier(16)
    outcomes: list[CopyOutcome] = []

    def run() -> None:
        barrier.wait()
        outcomes.append(engine.engine.copy("hot-small", absent=True).outcome)

    threads = [threading.Thread(target=run) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(CopyOutcome.COPIED) == 1, outcomes
    assert set(outcomes) == {CopyOutcome.COPIED} | ({CopyOutcome.EXISTS} & set(outcomes))
    assert engine.stored("hot-small") == body
    assert engine.leases() == []


def test_absent_skips_the_first_check_but_never_overwrites(engine: Engine) -> None:
    engine.origins["primary"].put("k", b"origin")
    engine.s3.put_object(Bucket=engine.bucket, Key="k", Body=b"already there")
    result = engine.engine.copy("k", absent=True)
    assert result.outcome is CopyOutcome.EXISTS
    assert engine.stored("k") == b"already there"


def test_memory_stays_bounded_by_parts(engine: Engine) -> None:
    """The origin is never asked for more than one part at a time per read."""
    body = payload(16 * MiB)
    origin = engine.origins["primary"]
    origin.put("k", body)
    asked, delivered = count_reads(origin)
    assert engine.engine.copy("k").outcome is CopyOutcome.COPIED
    sizes = [stop - start for start, stop in (o.range.resolve(len(body)) for o in asked if o.range)]
    assert len(sizes) == len(asked) == 4
    assert max(sizes) == 5 * MiB
    assert sum(delivered) == len(body)
    # Every read after the first is pinned to the version the first answer described.
    assert all(o.pin is not None for o in asked)


def test_a_copy_told_the_key_is_absent_reads_its_first_part_from_the_describing_get(
    engine: Engine,
) -> None:
    body = payload(12 * MiB, seed=5)
    origin = engine.origins["primary"]
    origin.put("k", body)
    asked, delivered = count_reads(origin)
    result = engine.engine.copy("k", absent=True)
    assert result.outcome is CopyOutcome.COPIED, result.reason
    assert engine.stored("k") == body
    # One whole-object GET (its first 5 MiB used), then the other two parts, pinned.
    assert asked[0].range is None
    assert asked[0].pin is None
    assert [o.range.resolve(len(body)) for o in asked[1:] if o.range] == [
        (5 * MiB, 10 * MiB),
        (10 * MiB, 12 * MiB),
    ]
    assert all(o.pin is not None for o in asked[1:])
    assert sum(delivered) >= len(body)


@pytest.fixture(autouse=True)
def _no_aws_env_leak() -> Iterator[None]:
    yield
    assert "AWS_PROFILE" not in os.environ


@pytest.mark.parametrize(
    ("endpoint", "signed"),
    [
        (None, False),
        ("https://s3.example.com", False),
        ("http://127.0.0.1:9000", False),
        ("http://localhost:9000", False),
        ("http://[::1]:9000", False),
        ("http://s3.internal.example:9000", True),
        ("http://10.0.0.5:9000", True),
    ],
)
def test_bodies_are_hashed_into_the_signature_only_off_tls_and_off_host(
    endpoint: str | None, signed: bool
) -> None:
    from backorigin.config.models import BucketConfig
    from backorigin.transfer.bucket import make_s3_client

    client = make_s3_client(BucketConfig(name="bucket", endpoint_url=endpoint, region="us-east-1"))
    assert client.meta.config.s3["payload_signing_enabled"] is signed
