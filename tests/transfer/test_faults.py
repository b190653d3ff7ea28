"""Copying from a misbehaving HTTP origin: exact bytes in S3, or nothing at all."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from backorigin.config import Config, load_config
from backorigin.keys import RESERVED_PREFIX
from backorigin.testing.http_origin import HttpOriginServer
from backorigin.transfer import CopyEngine, CopyOutcome

MiB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("s3_env")


@pytest.fixture(scope="module")
def origin() -> Iterator[HttpOriginServer]:
    with HttpOriginServer() as server:
        yield server


def payload(size: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def config_for(bucket: str, s3_url: str, origin_url: str, **http: Any) -> Config:
    settings = {"retries": 3, "backoff": "10ms", "read_timeout": "5s", **http}
    extra = "".join(f"    {k}: {v}\n" for k, v in settings.items())
    return load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{s3_url}', region: us-east-1}}\n"
        "origins:\n"
        "  - name: web\n"
        "    type: http\n"
        f"    base_url: '{origin_url}'\n" + extra + "copy: {part_size: 5MiB, concurrency: 3}\n"
    )


class Harness:
    def __init__(self, config: Config, s3: Any, origin: HttpOriginServer, **kw: Any) -> None:
        self.s3 = s3
        self.bucket = config.bucket.name
        self.origin = origin
        self.engine = CopyEngine(config, s3_client=s3, **kw)

    def stored(self, key: str) -> bytes | None:
        try:
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def assert_nothing_left(self) -> None:
        listed = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        assert [o["Key"] for o in listed] == [], "no object and no lease may be left"
        uploads = self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        assert uploads == [], "no multipart upload may be left open"


@pytest.fixture
def harness(
    request: pytest.FixtureRequest,
    bucket: str,
    seaweedfs: Any,
    s3_client: Any,
    origin: HttpOriginServer,
) -> Harness:
    http = getattr(request, "param", {})
    return Harness(config_for(bucket, seaweedfs.url, origin.url, **http), s3_client, origin)


@pytest.fixture
def key(request: pytest.FixtureRequest, origin: HttpOriginServer) -> Iterator[str]:
    name = f"{request.node.name.replace('[', '-').rstrip(']')}/object.bin"
    yield name
    origin.clear_faults(name)


SIZES = [pytest.param(700_000, id="single"), pytest.param(11 * MiB + 3, id="multipart")]


@pytest.mark.parametrize("size", SIZES)
def test_a_dropped_connection_resumes_by_range(harness: Harness, key: str, size: int) -> None:
    data = payload(size, key)
    harness.origin.put(key, data)
    harness.origin.drop_after(key, 100_000, times=2)
    result = harness.engine.copy(key)
    assert result.outcome is CopyOutcome.COPIED, result.reason
    assert harness.stored(key) == data
    served = harness.origin.bytes_served(key)
    assert size <= served <= 1.1 * size


@pytest.mark.parametrize("size", SIZES)
def test_5xx_and_429_bursts_are_retried(harness: Harness, key: str, size: int) -> None:
    data = payload(size, key)
    harness.origin.put(key, data)
    harness.origin.fail(key, times=2, status=503)
    result = harness.engine.copy(key)
    assert result.outcome is CopyOutcome.COPIED, result.reason
    harness.origin.fail(key + ".2", times=2, status=429, retry_after="0")
    harness.origin.put(key + ".2", data)
    assert harness.engine.copy(key + ".2").outcome is CopyOutcome.COPIED
    assert harness.stored(key) == data
    assert harness.stored(key + ".2") == data


@pytest.mark.parametrize("size", SIZES)
def test_an_origin_that_keeps_dropping_stores_nothing(
    harness: Harness, key: str, size: int
) -> None:
    harness.origin.put(key, payload(size, key))
    harness.origin.drop_after(key, 50_000)
    result = harness.engine.copy(key)
    assert result.outcome is CopyOutcome.FAILED
    assert "failed" in (result.reason or "")
    harness.assert_nothing_left()


@pytest.mark.parametrize("harness", [{"read_timeout": "300ms", "retries": 0}], indirect=True)
def test_a_stalled_origin_fails_cleanly(harness: Harness, key: str) -> None:
    harness.origin.put(key, payload(1000, key))
    harness.origin.stall(key, 1.0)
    result = harness.engine.copy(key)
    assert result.outcome is CopyOutcome.FAILED
    harness.assert_nothing_left()


@pytest.mark.parametrize("size", SIZES)
def test_a_lying_content_md5_stores_nothing(harness: Harness, key: str, size: int) -> None:
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    harness.origin.put(key, payload(size, key), headers={"Content-MD5": wrong})
    result = harness.engine.copy(key)
    assert result.outcome is CopyOutcome.FAILED
    assert "md5" in (result.reason or "")
    harness.assert_nothing_left()


def test_a_true_repr_digest_is_verified(harness: Harness, key: str) -> None:
    data = payload(11 * MiB, key)
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    harness.origin.put(key, data, headers={"Repr-Digest": f"sha-256=:{digest}:"})
    result = harness.engine.copy(key)
    assert result.outcome is CopyOutcome.COPIED, result.reason
    assert harness.stored(key) == data


def test_an_object_changed_mid_copy_stores_nothing(harness: Harness, key: str) -> None:
    harness.origin.put(key, payload(16 * MiB, key))

    def replace_on_second_get(n: int) -> None:
        if n == 2:
            harness.origin.replace(key, payload(16 * MiB, "a newer version"))

    harness.origin.on_get(key, replace_on_second_get)
    result = harness.engine.copy(key)
    assert result.outcome is CopyOutcome.FAILED
    assert "changed" in (result.reason or "")
    harness.assert_nothing_left()


def test_leases_live_under_the_reserved_prefix(harness: Harness, key: str) -> None:
    from backorigin.transfer.lease import lease_key

    assert lease_key("", key).startswith(RESERVED_PREFIX)
    assert lease_key("mirror/", key).startswith("mirror/" + RESERVED_PREFIX)
