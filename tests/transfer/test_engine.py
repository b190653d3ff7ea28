"""The copy engine against a real S3 server (SeaweedFS) with in-memory and HTTP origins."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from backorigin.adapters import register_adapter
from backorigin.config import Config, load_config
from backorigin.keys import RESERVED_PREFIX
from backorigin.testing.memory import MemoryAdapter
from backorigin.transfer import CopyEngine, CopyOutcome
from backorigin.transfer.plan import MAX_PARTS, part_size_for, plan_parts
from backorigin.types import ByteRange, ObjectInfo

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


def test_too_large_is_refused_before_reading(bucket: str, seaweedfs: Any, s3_client: Any) -> None:
    engine = Engine(make_config(bucket, seaweedfs.url, max_object_size="1KiB"), s3_client)
    reads: list[str] = []
    origin = engine.origins["primary"]
    original = origin.read

    def counting(key: str, range: ByteRange | None = None, version: str | None = None) -> Any:
        reads.append(key)
        return original(key, range, version)

    origin.read = counting  # type: ignore[method-assign]
    origin.put("big", b"x" * 2048)
    result = engine.engine.copy("big")
    assert result.outcome is CopyOutcome.TOO_LARGE
    assert reads == []
    assert engine.visible_keys() == []


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

    def head(self, key: str) -> ObjectInfo:
        info = super().head(key)
        from dataclasses import replace

        from backorigin.types import Checksums

        return replace(info, checksums=Checksums(md5=b"\x00" * 16))


@pytest.mark.parametrize("size", [1000, 11 * MiB])
def test_a_lying_checksum_stores_nothing(
    bucket: str, seaweedfs: Any, s3_client: Any, size: int
) -> None:
    config = make_config(bucket, seaweedfs.url)
    origin = LyingOrigin(config.origins[0])  # type: ignore[arg-type]
    origin.put("k", payload(size))
    engine = CopyEngine(config, s3_client=s3_client, adapters={"primary": origin})
    result = engine.copy("k")
    assert result.outcome is CopyOutcome.FAILED
    assert "md5" in (result.reason or "")
    view = Engine(config, s3_client)
    assert view.visible_keys() == []
    assert view.open_uploads() == []
    assert view.leases() == []


class ChangingOrigin(MemoryAdapter):
    """Replaces the object with a new version after the first ranged read."""

    def read(self, key: str, range: ByteRange | None = None, version: str | None = None) -> Any:
        stream = super().read(key, range, version)
        if range is not None and range.start == 0:
            self.put(key, payload(11 * MiB, seed=99))
        return stream


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
    served: list[int] = []
    lock = threading.Lock()
    original = origin.read

    def counting(key: str, range: ByteRange | None = None, version: str | None = None) -> Any:
        stop = range.stop if range is not None and range.stop is not None else len(body)
        with lock:
            served.append(stop - (range.start if range else 0))
        time.sleep(0.05)  # keep the winner busy long enough for everyone to collide
        return original(key, range, version)

    origin.read = counting  # type: ignore[method-assign]
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
    assert sum(served) == len(body)
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
    sizes: list[int] = []
    original = origin.read

    def recording(key: str, range: ByteRange | None = None, version: str | None = None) -> Any:
        assert range is not None
        assert version is not None
        start, stop = range.resolve(len(body))
        sizes.append(stop - start)
        return original(key, range, version)

    origin.read = recording  # type: ignore[method-assign]
    assert engine.engine.copy("k").outcome is CopyOutcome.COPIED
    assert max(sizes) == 5 * MiB
    assert sum(sizes) == len(body)


@pytest.fixture(autouse=True)
def _no_aws_env_leak() -> Iterator[None]:
    yield
    assert "AWS_PROFILE" not in os.environ
