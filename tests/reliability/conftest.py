"""Fixtures of the reliability suite: one origin, one S3 fault proxy, a lab per module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from reliability_support import Lab, S3FaultProxy

from backorigin.testing.http_origin import HttpOriginServer


@pytest.fixture(scope="session")
def rel_origin() -> Iterator[HttpOriginServer]:
    """The HTTP origin every reliability test shares (each trial has keys of its own)."""
    with HttpOriginServer() as server:
        yield server


@pytest.fixture(scope="session")
def fault_proxy(seaweedfs: Any) -> Iterator[S3FaultProxy]:
    """A real proxy in front of the session's SeaweedFS that can answer with S3 errors."""
    with S3FaultProxy(seaweedfs.url) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def lab(
    seaweedfs: Any,
    s3_client: Any,
    fault_proxy: S3FaultProxy,
    rel_origin: HttpOriginServer,
    s3_credentials: dict[str, str],
) -> Iterator[Lab]:
    """One bucket per test module; at the end, no upload may be open anywhere in it."""
    bucket = f"rel-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=bucket)
    made = Lab(s3_client, bucket, seaweedfs, fault_proxy, rel_origin, s3_credentials)
    yield made
    fault_proxy.clear()
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == [], f"multipart uploads left open in the module's bucket: {uploads}"
