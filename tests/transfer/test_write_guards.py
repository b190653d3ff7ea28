"""The two guards of every write to S3, each tested at the moment it matters, against SeaweedFS.

* Create-only: an object another writer creates after the engine looked (its HEADs said
  "absent") and before the engine's own write lands must survive. The competing write is
  made by a proxy between the engine and SeaweedFS, once it holds the engine's PutObject or
  CompleteMultipartUpload and before it forwards it, so the race is hit every time,
  whichever HTTP stack sent the request (the CRT's for a PutObject, botocore's for the
  multipart calls). SeaweedFS
  enforces ``If-None-Match: *`` on both (412), as S3 does:
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
* Integrity: a proxy between the engine and SeaweedFS flips one byte of an object's body on
  its way to S3. SeaweedFS does not compare the signed payload hash with the body, so the
  CRC32C the engine sends is what must refuse it (``BadDigest``), and nothing may be
  stored: https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html
"""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from backorigin.adapters import register_adapter
from backorigin.config import Config, load_config
from backorigin.keys import RESERVED_PREFIX
from backorigin.testing.memory import MemoryAdapter
from backorigin.transfer import CopyEngine, CopyOutcome
from backorigin.transfer.bucket import make_s3_client
from backorigin.transfer.digest import crc32c
from net_support import TamperingProxy

MiB = 1024 * 1024
COMPETITOR = b"written by another writer while the engine was copying"


@pytest.fixture(autouse=True)
def memory_type(clean_registry: None) -> None:
    register_adapter("memory", MemoryAdapter)


def make_config(bucket: str, endpoint: str) -> Config:
    return load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{endpoint}', region: us-east-1}}\n"
        "origins:\n  - {name: primary, type: memory}\n"
        "copy: {part_size: 5MiB, concurrency: 2, lease_ttl: 30s}\n"
    )


def body_of(size: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


class Setup:
    """An engine over a memory origin, with an S3 client of its own (to hook into) and a
    separate client for the checks and the competing writer."""

    def __init__(self, bucket: str, endpoint: str, s3: Any, credentials: dict[str, str]) -> None:
        self.bucket = bucket
        self.s3 = s3
        config = make_config(bucket, endpoint)
        self.client = make_s3_client(
            config.bucket,
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        )
        self.origin = MemoryAdapter(config.origins[0])  # type: ignore[arg-type]
        self.engine = CopyEngine(config, s3_client=self.client, adapters={"primary": self.origin})

    def stored(self, key: str) -> bytes | None:
        try:
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def open_uploads(self) -> list[str]:
        listed = self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return [u["Key"] for u in listed]

    def leases(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=RESERVED_PREFIX)
        return [o["Key"] for o in listed.get("Contents", [])]


# --- create-only ------------------------------------------------------------------------------


def compete_before(
    operation: str, key: str, s3: Any, bucket: str
) -> tuple[Callable[[str, str, bytes], bytes], list[str]]:
    """A proxy hook: the first time the engine's ``operation`` on ``key`` passes, another
    writer (``s3``) creates ``key`` before the request goes on. Returns the hook and what
    fired."""
    fired: list[str] = []

    def hook(method: str, path: str, body: bytes) -> bytes:
        parsed = urllib.parse.urlsplit(path)
        name = urllib.parse.unquote(parsed.path.split("/", 2)[-1])
        query = urllib.parse.parse_qs(parsed.query)
        seen = {
            ("PUT", False): "PutObject",
            ("POST", True): "CompleteMultipartUpload",
        }.get((method, "uploadId" in query))
        if seen == operation and name == key and not fired:
            fired.append(operation)
            s3.put_object(Bucket=bucket, Key=key, Body=COMPETITOR)
        return body

    return hook, fired


def test_an_object_created_just_before_the_put_survives(
    tampered: Callable[..., tuple[Setup, TamperingProxy]], s3_client: Any, bucket: str
) -> None:
    hook, fired = compete_before("PutObject", "small.txt", s3_client, bucket)
    setup, _ = tampered(hook)
    setup.origin.put("small.txt", b"the origin's older copy")
    result = setup.engine.copy("small.txt")
    assert fired == ["PutObject"]
    assert result.outcome is CopyOutcome.EXISTS, result
    assert setup.stored("small.txt") == COMPETITOR
    assert setup.leases() == []


def test_an_object_created_just_before_the_multipart_completion_survives(
    tampered: Callable[..., tuple[Setup, TamperingProxy]], s3_client: Any, bucket: str
) -> None:
    hook, fired = compete_before("CompleteMultipartUpload", "big.bin", s3_client, bucket)
    setup, _ = tampered(hook)
    data = body_of(5 * MiB + 4096, "multipart")
    setup.origin.put("big.bin", data)
    result = setup.engine.copy("big.bin")
    assert fired == ["CompleteMultipartUpload"]
    assert result.outcome is CopyOutcome.EXISTS, result
    assert setup.stored("big.bin") == COMPETITOR
    assert setup.open_uploads() == []  # the refused upload was aborted
    assert setup.leases() == []


# --- integrity on the way to S3 ---------------------------------------------------------------


def flip_one_byte(victim: str, parts: set[int] | None = None) -> Callable[[str, str, bytes], bytes]:
    """A tamper function: flip the middle byte of the bodies written to ``victim`` (every
    PutObject, or the UploadParts numbered ``parts``)."""

    def tamper(method: str, path: str, body: bytes) -> bytes:
        parsed = urllib.parse.urlsplit(path)
        key = urllib.parse.unquote(parsed.path.split("/", 2)[-1])
        query = urllib.parse.parse_qs(parsed.query)
        if method != "PUT" or key != victim or not body:
            return body
        if "uploadId" in query and (parts is None or int(query["partNumber"][0]) not in parts):
            return body
        middle = len(body) // 2
        return body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :]

    return tamper


@pytest.fixture
def tampered(
    bucket: str, seaweedfs: Any, s3_client: Any, s3_credentials: dict[str, str]
) -> Iterator[Callable[..., tuple[Setup, TamperingProxy]]]:
    """Build a setup whose engine writes to S3 through a tampering proxy."""
    made: list[tuple[Setup, TamperingProxy]] = []

    def build(tamper: Callable[[str, str, bytes], bytes]) -> tuple[Setup, TamperingProxy]:
        proxy = TamperingProxy(seaweedfs.url, tamper).__enter__()
        setup = Setup(bucket, proxy.url, s3_client, s3_credentials)
        made.append((setup, proxy))
        return setup, proxy

    yield build
    for setup, proxy in made:
        setup.engine.close()
        proxy.__exit__()


def test_a_put_corrupted_in_transit_is_refused_and_nothing_is_stored(
    tampered: Callable[..., tuple[Setup, TamperingProxy]],
) -> None:
    data = body_of(100_000, "small")
    setup, proxy = tampered(flip_one_byte("small.bin"))
    setup.origin.put("small.bin", data)
    result = setup.engine.copy("small.bin")
    hit = [f for f in proxy.forwarded if f.tampered]
    assert [(f.method, f.status) for f in hit] == [("PUT", 400)]
    expected = base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()
    assert hit[0].headers.get("x-amz-checksum-crc32c") == expected
    assert result.outcome is CopyOutcome.FAILED, result
    assert setup.stored("small.bin") is None
    assert setup.leases() == []


def test_a_part_corrupted_in_transit_is_refused_and_nothing_is_stored(
    tampered: Callable[..., tuple[Setup, TamperingProxy]],
) -> None:
    data = body_of(5 * MiB + 4096, "parts")
    setup, proxy = tampered(flip_one_byte("parts.bin", parts={1}))
    setup.origin.put("parts.bin", data)
    result = setup.engine.copy("parts.bin")
    hit = [f for f in proxy.forwarded if f.tampered]
    assert [(f.method, f.status) for f in hit] == [("PUT", 400)]
    expected = base64.b64encode(crc32c(data[: 5 * MiB]).to_bytes(4, "big")).decode()
    assert hit[0].headers.get("x-amz-checksum-crc32c") == expected
    assert result.outcome is CopyOutcome.FAILED, result
    assert setup.stored("parts.bin") is None
    assert setup.open_uploads() == []
    assert setup.leases() == []


# --- the request shape of small bodies --------------------------------------------------------


def test_small_bodies_go_with_their_headers_and_large_ones_wait_for_100_continue(
    tampered: Callable[..., tuple[Setup, TamperingProxy]],
) -> None:
    setup, proxy = tampered(lambda method, path, body: body)
    small = body_of(64 * 1024, "small")
    large = body_of(5 * MiB + 4096, "large")
    setup.origin.put("small.bin", small)
    setup.origin.put("large.bin", large)
    assert setup.engine.copy("small.bin").outcome is CopyOutcome.COPIED
    assert setup.engine.copy("large.bin").outcome is CopyOutcome.COPIED
    assert setup.stored("small.bin") == small
    assert setup.stored("large.bin") == large
    sent = [
        (
            "UploadPart" if "uploadId=" in f.path else "PutObject",
            int(f.headers.get("content-length", -1)),
            f.headers.get("expect"),
        )
        for f in proxy.forwarded
        if f.method == "PUT" and urllib.parse.urlsplit(f.path).path.endswith(".bin")
    ]  # the objects, not the leases
    assert sorted(sent) == [
        ("PutObject", 64 * 1024, None),
        ("UploadPart", 4096, None),
        ("UploadPart", 5 * MiB, "100-continue"),
    ]
