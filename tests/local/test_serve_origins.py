"""`serve` end to end for each origin type on its emulator: GCS, Azure Blob, S3-compatible."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import urllib3

from backorigin.config import SecretResolver, load_config
from backorigin.local import LocalCloudFront

pytestmark = pytest.mark.usefixtures("s3_env")


@dataclass
class Legacy:
    """An origin on an emulator: its config entry and a way to put objects into it."""

    origin_yaml: str
    put: Callable[[str, bytes, str], None]
    environ: dict[str, str]


def gcs_origin(fake_gcs: Any) -> Legacy:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs.url},
    )
    name = f"legacy-{uuid.uuid4().hex[:8]}"
    bucket = client.create_bucket(name)

    def put(key: str, data: bytes, content_type: str) -> None:
        bucket.blob(key).upload_from_string(data, content_type=content_type)

    return Legacy(
        f"{{name: old, type: gcs, bucket: {name}, endpoint_url: '{fake_gcs.url}'}}", put, {}
    )


def azure_origin(azurite: Any) -> Legacy:
    from azure.storage.blob import BlobServiceClient, ContentSettings

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = f"legacy-{uuid.uuid4().hex[:8]}"
    service.create_container(container)

    def put(key: str, data: bytes, content_type: str) -> None:
        service.get_blob_client(container, key).upload_blob(
            data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
        )

    return Legacy(
        f"{{name: old, type: azure, account_url: '{azurite.account_url}', container: {container},"
        " auth: {mode: connection_string, connection_string: {secret: {env: AZ_CONN}}}}",
        put,
        {"AZ_CONN": azurite.connection_string},
    )


def s3_origin(seaweedfs: Any, s3_client: Any, s3_credentials: dict[str, str]) -> Legacy:
    # CloudFront can reach only a public bucket through the edge (it adds X-Amz-Cf-Id after
    # the function, which S3 refuses on a signed request): the session's public bucket, read
    # anonymously, below a prefix of this test's own.
    name, prefix = "public-legacy", f"t-{uuid.uuid4().hex[:8]}/"
    with contextlib.suppress(s3_client.exceptions.ClientError):
        s3_client.create_bucket(Bucket=name)

    def put(key: str, data: bytes, content_type: str) -> None:
        s3_client.put_object(Bucket=name, Key=prefix + key, Body=data, ContentType=content_type)

    return Legacy(
        f"{{name: old, type: s3, bucket: {name}, region: us-east-1, endpoint_url: "
        f"'{seaweedfs.url}', prefix: '{prefix}', auth: {{mode: anonymous}}}}",
        put,
        {},
    )


@pytest.fixture(params=["gcs", "azure", "s3"])
def legacy(request: pytest.FixtureRequest) -> Legacy:
    if request.param == "gcs":
        return gcs_origin(request.getfixturevalue("fake_gcs"))
    if request.param == "azure":
        return azure_origin(request.getfixturevalue("azurite"))
    return s3_origin(
        request.getfixturevalue("seaweedfs"),
        request.getfixturevalue("s3_client"),
        request.getfixturevalue("s3_credentials"),
    )


@pytest.fixture
def cloudfront(
    legacy: Legacy, bucket: str, seaweedfs: Any, s3_client: Any
) -> Iterator[LocalCloudFront]:
    config = load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        f"origins:\n  - {legacy.origin_yaml}\n"
        "edge: {negative_ttl: 9s}\n"
    )
    server = LocalCloudFront(
        config, s3_client=s3_client, port=0, secrets=SecretResolver(environ=legacy.environ)
    )
    with server:
        yield server


def get(server: LocalCloudFront, path: str, **headers: str) -> urllib3.BaseHTTPResponse:
    return urllib3.request("GET", server.url + path, headers=headers, retries=False, timeout=60)


def test_the_whole_flow(
    legacy: Legacy, cloudfront: LocalCloudFront, s3_client: Any, bucket: str
) -> None:
    body = hashlib.shake_256(b"page").digest(40_000)
    legacy.put("docs/page one.html", body, "text/html")
    first = get(cloudfront, "/docs/page%20one.html")
    assert (first.status, first.data) == (200, body)
    assert first.headers["x-backorigin"] == "origin"
    assert cloudfront.queue.join(timeout=60)
    head = s3_client.head_object(Bucket=bucket, Key="docs/page one.html")
    assert head["ContentType"] == "text/html"
    assert head["Metadata"]["backorigin-origin"] == "old"
    # The copy records the validator the viewer was served from the old origin.
    assert head["Metadata"]["backorigin-origin-etag"] == first.headers["etag"]
    second = get(cloudfront, "/docs/page%20one.html")
    assert (second.status, second.data) == (200, body)
    assert "x-backorigin" not in second.headers

    legacy.put("docs/other.bin", body, "application/octet-stream")
    ranged = get(cloudfront, "/docs/other.bin", Range="bytes=5-14")
    assert (ranged.status, ranged.data) == (206, body[5:15])

    missing = get(cloudfront, "/docs/missing.txt")
    assert missing.status == 404
    assert missing.headers["cache-control"] == "max-age=9"
    assert get(cloudfront, "/docs/%2e%2e/x").status == 400


def test_fifty_concurrent_misses_make_one_copy(
    legacy: Legacy, cloudfront: LocalCloudFront, s3_client: Any, bucket: str
) -> None:
    body = hashlib.shake_256(b"hot").digest(300_000)
    legacy.put("hot.bin", body, "application/octet-stream")
    barrier = threading.Barrier(50)
    bodies: list[bytes] = []
    lock = threading.Lock()

    def fetch() -> None:
        barrier.wait()
        data = get(cloudfront, "/hot.bin").data
        with lock:
            bodies.append(data)

    threads = [threading.Thread(target=fetch) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bodies == [body] * 50
    assert cloudfront.queue.join(timeout=60)
    copied = [c for c in cloudfront.copies if c.key == "hot.bin" and c.outcome.value == "copied"]
    assert len(copied) == 1
    assert s3_client.get_object(Bucket=bucket, Key="hot.bin")["Body"].read() == body
