"""The strict proxies of backorigin.testing: each refuses what the real store refuses and the
emulator behind it accepts, and forwards everything else unchanged.

Where the emulator alone accepts a request the proxy refuses, a test shows it, so the tests
prove the proxy adds the rule rather than the emulator already having it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import urllib3
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pydantic import SecretStr

from backorigin.adapters.gcs import V4Signer
from backorigin.local.embedded_s3 import EmbeddedS3
from backorigin.testing.servers import FakeGcsServer
from backorigin.testing.strict import (
    StrictGcsProxy,
    StrictS3Proxy,
    goog4_problem,
    mixed_header_families,
    unsigned_amz_headers,
)

CF_ID = "cloudfront-request-id=="
HMAC_ID = "GOOG1STRICTPROXYTESTID"
HMAC_SECRET = "strict-proxy-hmac-secret"


KEYS: dict[str, Credentials] = {}


@pytest.fixture(autouse=True)
def _s3_keys(s3_credentials: dict[str, str]) -> None:
    KEYS["s3"] = Credentials(
        s3_credentials["AWS_ACCESS_KEY_ID"], s3_credentials["AWS_SECRET_ACCESS_KEY"]
    )


def sigv4_headers(url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The headers of a GET signed with SigV4 (Authorization header) by botocore."""
    request = AWSRequest(method="GET", url=url, headers=dict(extra or {}))
    request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    S3SigV4Auth(KEYS["s3"], "s3", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def presigned(url: str) -> str:
    """A presigned GET URL (SigV4 query parameters, ``host`` signed) made by botocore."""
    request = AWSRequest(method="GET", url=url)
    S3SigV4QueryAuth(KEYS["s3"], "s3", "us-east-1", expires=300).add_auth(request)
    return str(request.url)


def get(url: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    return urllib3.request("GET", url, headers=headers or {}, retries=False, redirect=False)


@pytest.fixture
def s3_object(seaweedfs: EmbeddedS3, s3_client: Any, bucket: str) -> str:
    s3_client.put_object(Bucket=bucket, Key="o bj.txt", Body=b"strict bytes")
    return f"/{bucket}/o%20bj.txt"


@pytest.fixture
def s3_proxy(seaweedfs: EmbeddedS3) -> Iterator[StrictS3Proxy]:
    with StrictS3Proxy(seaweedfs.url) as proxy:
        yield proxy  # type: ignore[misc]


# --- the checks as functions -----------------------------------------------------------------


def test_unsigned_amz_headers_reads_both_signature_forms() -> None:
    header_form = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=A/20240101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=00",
        "X-Amz-Date": "20240101T000000Z",
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        "X-Amz-Cf-Id": CF_ID,
        "x-amzn-trace-id": "not an x-amz- header",
    }
    assert unsigned_amz_headers(header_form) == ["x-amz-cf-id"]
    tolerated = frozenset({"x-amz-cf-id"})
    assert unsigned_amz_headers(header_form, tolerated=tolerated) == []
    query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host&X-Amz-Signature=00"
    assert unsigned_amz_headers({"x-amz-cf-id": CF_ID}, query) == ["x-amz-cf-id"]
    assert unsigned_amz_headers({"x-amz-cf-id": CF_ID}) is None  # anonymous: not checked
    assert unsigned_amz_headers({"authorization": "Bearer t", "x-amz-cf-id": CF_ID}) is None


def test_mixed_header_families() -> None:
    assert mixed_header_families({"X-Goog-Date": "d", "X-Amz-Cf-Id": CF_ID})
    assert not mixed_header_families({"x-goog-date": "d", "authorization": "x"})
    assert not mixed_header_families({"x-amz-cf-id": CF_ID, "authorization": "Bearer t"})


# --- S3 --------------------------------------------------------------------------------------


def test_seaweedfs_alone_refuses_with_another_error(seaweedfs: EmbeddedS3, s3_object: str) -> None:
    """SeaweedFS signs every x-amz-* header it receives, so it refuses too, but as a wrong
    signature; the proxy answers as S3 does, naming the header (and covers servers such as
    moto that check no signatures at all)."""
    url = seaweedfs.url + s3_object
    headers = sigv4_headers(url)
    assert get(url, headers).status == 200
    refused = get(url, {**headers, "X-Amz-Cf-Id": CF_ID})
    assert refused.status == 403
    assert b"SignatureDoesNotMatch" in refused.data


def test_a_header_signed_request_with_an_unsigned_x_amz_header_is_refused(
    s3_proxy: StrictS3Proxy, s3_object: str
) -> None:
    url = s3_proxy.url + s3_object
    headers = sigv4_headers(url)
    ok = get(url, headers)
    assert ok.status == 200
    assert ok.data == b"strict bytes"
    refused = get(url, {**headers, "X-Amz-Cf-Id": CF_ID})
    assert refused.status == 403
    assert b"<Code>AccessDenied</Code>" in refused.data
    assert b"There were headers present in the request which were not signed" in refused.data
    assert b"<HeadersNotSigned>x-amz-cf-id</HeadersNotSigned>" in refused.data
    assert [r.headers_not_signed for r in s3_proxy.refused] == [("x-amz-cf-id",)]
    assert s3_proxy.forwarded == 1


def test_signing_the_header_makes_it_acceptable(s3_proxy: StrictS3Proxy, s3_object: str) -> None:
    url = s3_proxy.url + s3_object
    headers = sigv4_headers(url, {"x-amz-cf-id": CF_ID})
    assert "x-amz-cf-id" in headers["Authorization"]
    assert get(url, headers).status == 200


def test_a_presigned_request_with_an_unsigned_x_amz_header_is_refused(
    s3_proxy: StrictS3Proxy, s3_object: str
) -> None:
    url = presigned(s3_proxy.url + s3_object)
    assert get(url).data == b"strict bytes"
    refused = get(url, {"X-Amz-Cf-Id": CF_ID})
    assert refused.status == 403
    assert b"<HeadersNotSigned>x-amz-cf-id</HeadersNotSigned>" in refused.data


def test_anonymous_requests_are_forwarded_whatever_they_carry(
    s3_proxy: StrictS3Proxy, s3_object: str
) -> None:
    response = get(s3_proxy.url + s3_object, {"X-Amz-Cf-Id": CF_ID})
    # SeaweedFS has auth on, so it refuses the anonymous read itself: the proxy did not.
    assert s3_proxy.refused == []
    assert s3_proxy.forwarded == 1
    assert response.status == 403
    assert b"HeadersNotSigned" not in response.data


# --- GCS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcs_object(fake_gcs: FakeGcsServer) -> str:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test-project",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs.url},
    )
    name = f"strict-{uuid.uuid4().hex[:10]}"
    client.create_bucket(name)
    client.bucket(name).blob("o bj.txt").upload_from_string(b"gcs bytes")
    return f"/{name}/o%20bj.txt"


@pytest.fixture
def gcs_proxy(fake_gcs: FakeGcsServer) -> Iterator[StrictGcsProxy]:
    with StrictGcsProxy(fake_gcs.url, hmac_keys={HMAC_ID: HMAC_SECRET}) as proxy:
        yield proxy  # type: ignore[misc]


def goog4_headers(host: str, path: str, secret: str = HMAC_SECRET) -> dict[str, str]:
    return V4Signer(HMAC_ID, SecretStr(secret)).sign("GET", host, path)


def test_fake_gcs_alone_accepts_mixed_header_families(
    fake_gcs: FakeGcsServer, gcs_object: str
) -> None:
    host = fake_gcs.url.removeprefix("http://")
    headers = {**goog4_headers(host, gcs_object), "X-Amz-Cf-Id": CF_ID}
    assert get(fake_gcs.url + gcs_object, headers).status == 200  # the gap the proxy closes


def test_mixed_header_families_are_refused(gcs_proxy: StrictGcsProxy, gcs_object: str) -> None:
    host = gcs_proxy.url.removeprefix("http://")
    headers = goog4_headers(host, gcs_object)
    ok = get(gcs_proxy.url + gcs_object, headers)
    assert ok.status == 200
    assert ok.data == b"gcs bytes"
    refused = get(gcs_proxy.url + gcs_object, {**headers, "X-Amz-Cf-Id": CF_ID})
    assert refused.status == 400
    assert b"<Code>ExcessHeaderValues</Code>" in refused.data
    assert b"Requests cannot specify both x-amz and x-goog headers." in refused.data
    # An x-amz-* header alone (an anonymous or bearer request through CloudFront) is fine.
    assert get(gcs_proxy.url + gcs_object, {"X-Amz-Cf-Id": CF_ID}).status == 200


def test_goog4_signatures_are_verified(gcs_proxy: StrictGcsProxy, gcs_object: str) -> None:
    host = gcs_proxy.url.removeprefix("http://")
    wrong = get(gcs_proxy.url + gcs_object, goog4_headers(host, gcs_object, "wrong"))
    assert wrong.status == 403
    assert b"SignatureDoesNotMatch" in wrong.data
    extra = {**goog4_headers(host, gcs_object), "x-goog-user-project": "unsigned"}
    unsigned = get(gcs_proxy.url + gcs_object, extra)
    assert unsigned.status == 400
    assert b"x-goog-user-project" in unsigned.data


def test_goog4_query_form_checks() -> None:
    """The query form: signature over the canonical query without X-Goog-Signature; expiry."""
    stamp = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    scope = "20240102/auto/storage/goog4_request"
    query = (
        "X-Goog-Algorithm=GOOG4-HMAC-SHA256"
        f"&X-Goog-Credential={HMAC_ID}%2F{scope.replace('/', '%2F')}"
        "&X-Goog-Date=20240102T030405Z&X-Goog-Expires=60&X-Goog-SignedHeaders=host"
    )
    headers = {"host": "storage.googleapis.com"}
    target = f"/b/k?{query}&X-Goog-Signature=00"
    keys = {HMAC_ID: HMAC_SECRET}
    inside = stamp + timedelta(seconds=30)
    assert goog4_problem("GET", target, headers, keys, now=inside) == (
        403,
        "SignatureDoesNotMatch",
        "The request signature does not match.",
    )
    late = goog4_problem("GET", target, headers, keys, now=stamp + timedelta(seconds=61))
    assert late is not None
    assert late[1] == "ExpiredToken"
    assert goog4_problem("GET", "/b/k", headers, keys) is None  # not GOOG4-signed
