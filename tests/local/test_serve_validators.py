"""`serve`: clients revalidating what the old origin gave them get 304s after the move to S3."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from backorigin.config import load_config
from backorigin.local import LocalCloudFront

pytestmark = pytest.mark.usefixtures("s3_env")


@pytest.fixture
def gcs_bucket(fake_gcs: Any) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs.url},
    )
    return client.create_bucket(f"validators-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def cloudfront(
    bucket: str, seaweedfs: Any, s3_client: Any, gcs_bucket: Any, fake_gcs: Any
) -> Iterator[LocalCloudFront]:
    config = load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        f"origins: [{{name: old, type: gcs, bucket: {gcs_bucket.name},"
        f" endpoint_url: '{fake_gcs.url}'}}]\n"
    )
    with LocalCloudFront(config, s3_client=s3_client, port=0) as server:
        yield server


def get(server: LocalCloudFront, path: str, **headers: str) -> urllib3.BaseHTTPResponse:
    return urllib3.request("GET", server.url + path, headers=headers, retries=False, timeout=60)


def test_old_validators_still_validate_after_the_copy(
    cloudfront: LocalCloudFront, gcs_bucket: Any, s3_client: Any, bucket: str
) -> None:
    body = hashlib.shake_256(b"logo").digest(50_000)
    gcs_bucket.blob("img/logo.png").upload_from_string(body, content_type="image/png")
    first = get(cloudfront, "/img/logo.png")
    assert (first.status, first.data) == (200, body)
    assert first.headers["x-backorigin"] == "origin"
    old_etag, old_date = first.headers["etag"], first.headers["last-modified"]
    assert cloudfront.queue.join(timeout=60), "the copy did not finish"
    s3_etag = s3_client.head_object(Bucket=bucket, Key="img/logo.png")["ETag"]
    assert s3_etag != old_etag  # S3 computes its own; the edge must bridge the two

    # From S3 now, with the validators the viewer already holds.
    moved = get(cloudfront, "/img/logo.png")
    assert (moved.status, moved.data) == (200, body)
    assert "x-backorigin" not in moved.headers
    assert (moved.headers["etag"], moved.headers["last-modified"]) == (old_etag, old_date)

    revalidated = get(cloudfront, "/img/logo.png", **{"If-None-Match": old_etag})
    assert (revalidated.status, revalidated.data) == (304, b"")
    assert revalidated.headers["etag"] == old_etag
    assert "x-backorigin" not in revalidated.headers
    by_date = get(cloudfront, "/img/logo.png", **{"If-Modified-Since": old_date})
    assert (by_date.status, by_date.data) == (304, b"")

    changed = get(cloudfront, "/img/logo.png", **{"If-None-Match": '"not-this-one"'})
    assert (changed.status, changed.data) == (200, body)
    assert changed.headers["etag"] == old_etag
    earlier = get(
        cloudfront, "/img/logo.png", **{"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert (earlier.status, earlier.data) == (200, body)
    # S3's own ETag names the same bytes: S3 itself answers 304.
    assert get(cloudfront, "/img/logo.png", **{"If-None-Match": s3_etag}).status == 304
    # Provenance stays internal: viewers see the validators, not the metadata.
    assert not [h for h in moved.headers if h.lower().startswith("x-amz-meta-backorigin")]
