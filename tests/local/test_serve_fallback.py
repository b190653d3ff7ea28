"""`serve`: an object that exists only on a route's fallback origin reaches S3 on its own."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from backorigin.config import load_config
from backorigin.local import LocalCloudFront
from backorigin.testing.http_origin import HttpOriginServer

pytestmark = pytest.mark.usefixtures("s3_env")


@pytest.fixture(scope="module")
def origin() -> Iterator[HttpOriginServer]:
    with HttpOriginServer() as server:
        yield server


@pytest.fixture
def gcs_bucket(fake_gcs: Any) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs.url},
    )
    return client.create_bucket(f"fallback-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def cloudfront(
    bucket: str, seaweedfs: Any, s3_client: Any, origin: HttpOriginServer, gcs_bucket: Any,
    fake_gcs: Any,
) -> Iterator[LocalCloudFront]:  # fmt: skip
    config = load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        "origins:\n"
        f"  - {{name: web, type: http, base_url: '{origin.url}site/'}}\n"
        f"  - {{name: archive, type: gcs, bucket: {gcs_bucket.name},"
        f" endpoint_url: '{fake_gcs.url}'}}\n"
        "routes:\n"
        "  - {prefix: solo/, origin: web}\n"
        "  - {prefix: '', origin: web, fallback: [archive]}\n"
        "edge: {negative_ttl: 7s}\n"
    )
    with LocalCloudFront(config, s3_client=s3_client, port=0, workers=2) as server:
        yield server


def get(server: LocalCloudFront, path: str) -> urllib3.BaseHTTPResponse:
    return urllib3.request("GET", server.url + path, retries=False, timeout=60)


def outcomes(server: LocalCloudFront, key: str) -> list[tuple[str, str | None]]:
    return [(c.outcome.value, c.origin) for c in server.copies if c.key == key]


def test_an_object_only_on_the_fallback_is_copied_after_one_404(
    cloudfront: LocalCloudFront, origin: HttpOriginServer, gcs_bucket: Any, s3_client: Any,
    bucket: str,
) -> None:  # fmt: skip
    body = hashlib.shake_256(b"archived").digest(70_000)
    gcs_bucket.blob("reports/2019.pdf").upload_from_string(body, content_type="application/pdf")

    # The routed origin answers the viewer: a 404, cached only for the negative TTL.
    first = get(cloudfront, "/reports/2019.pdf")
    assert first.status == 404
    assert first.headers["cache-control"] == "max-age=7"
    assert first.headers["x-backorigin"] == "origin"
    assert get(cloudfront, "/reports/2019.pdf").status == 404  # de-duplicated: one job

    assert cloudfront.queue.join(timeout=60), "the copy did not finish"
    assert outcomes(cloudfront, "reports/2019.pdf") == [("copied", "archive")]
    head = s3_client.head_object(Bucket=bucket, Key="reports/2019.pdf")
    assert head["Metadata"]["backorigin-origin"] == "archive"

    origin.reset_counters()
    second = get(cloudfront, "/reports/2019.pdf")
    assert (second.status, second.data) == (200, body)
    assert "x-backorigin" not in second.headers  # served from S3
    assert second.headers["content-type"] == "application/pdf"
    assert origin.total_requests() == 0


def test_a_404_on_a_route_without_fallbacks_enqueues_nothing(
    cloudfront: LocalCloudFront,
) -> None:
    for n in range(5):  # random keys must not turn into copy jobs
        response = get(cloudfront, f"/solo/missing-{n}.txt")
        assert response.status == 404
        assert response.headers["cache-control"] == "max-age=7"
    assert cloudfront.queue.join(timeout=60)
    assert [c.key for c in cloudfront.copies] == []


def test_a_key_on_neither_origin_costs_one_job_that_finds_nothing(
    cloudfront: LocalCloudFront,
) -> None:
    assert get(cloudfront, "/nowhere.txt").status == 404
    assert get(cloudfront, "/nowhere.txt").status == 404
    assert cloudfront.queue.join(timeout=60)
    assert outcomes(cloudfront, "nowhere.txt") == [("not_found", None)]
    assert get(cloudfront, "/nowhere.txt").status == 404
