"""S3Adapter on real servers: EmbeddedS3 with auth on (conformance, SigV4 at the edge, errors)
and moto (STS AssumeRole, SSE-KMS), both on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import boto3
import pytest
import urllib3
from botocore.config import Config
from mypy_boto3_s3 import S3Client

from backorigin.adapters import create_adapter
from backorigin.adapters.s3 import S3Adapter, checksums_from_head, version_token
from backorigin.config import load_config
from backorigin.config.origins import S3Origin
from backorigin.config.secrets import SecretResolver
from backorigin.errors import (
    ConfigError,
    InvalidRange,
    ObjectNotFound,
    OriginError,
    PermissionDenied,
    PreconditionFailed,
    TransientOriginError,
    Unauthenticated,
)
from backorigin.local.embedded_s3 import EmbeddedS3
from backorigin.testing.conformance import AdapterConformance
from backorigin.testing.strict import StrictS3Proxy
from backorigin.types import ByteRange, GetOptions, OriginRequest, OriginSpec

# The identity of the session's SeaweedFS (the ``seaweedfs`` fixture of tests/conftest.py).
ACCESS_KEY = "AKIABACKORIGINTEST01"
SECRET_KEY = "backorigin-test-secret-key-0123456789"
WRONG_SECRET = "wr0ng-s3cr3t-77aa10"
SECRETS = {"S3_ACCESS_KEY_ID": ACCESS_KEY, "S3_SECRET_ACCESS_KEY": SECRET_KEY}
"""The fake environment the adapters read their key pair from."""
ACCESS_KEY_AUTH = {
    "mode": "access_key",
    "access_key_id": {"secret": {"env": "S3_ACCESS_KEY_ID"}},
    "secret_access_key": {"secret": {"env": "S3_SECRET_ACCESS_KEY"}},
}
PREFIX = "pfx/"
MakeAdapter = Callable[..., S3Adapter]
CloudFrontFetch = Callable[[OriginSpec, OriginRequest], urllib3.BaseHTTPResponse]
"""The ``via_cloudfront`` fixture: send a signed request with CloudFront's headers added."""


def admin_client(url: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> S3Client:
    """A plain boto3 client with boto3's defaults (it sends CRC32 checksums on uploads)."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )


PUBLIC_BUCKET = "public-legacy"
"""A bucket anyone may read (SeaweedFS's anonymous identity), for auth mode anonymous."""


@pytest.fixture(scope="session")
def seaweed(seaweedfs: EmbeddedS3) -> EmbeddedS3:
    """The session's SeaweedFS (S3 authentication on); tests use their own buckets/keys."""
    assert (seaweedfs.access_key, seaweedfs.secret_key) == (ACCESS_KEY, SECRET_KEY)
    assert seaweedfs.anonymous_read == (PUBLIC_BUCKET,)
    return seaweedfs


@pytest.fixture(scope="session")
def strict_s3(seaweed: EmbeddedS3) -> Iterator[StrictS3Proxy]:
    """S3's rule in front of SeaweedFS: a signed request carries no unsigned x-amz-* header."""
    with StrictS3Proxy(seaweed.url) as proxy:
        yield proxy  # type: ignore[misc]


@pytest.fixture(scope="session")
def public_bucket(admin: S3Client) -> str:
    with contextlib.suppress(admin.exceptions.BucketAlreadyOwnedByYou):
        admin.create_bucket(Bucket=PUBLIC_BUCKET)
    return PUBLIC_BUCKET


@pytest.fixture(scope="session")
def admin(seaweed: EmbeddedS3) -> S3Client:
    return admin_client(seaweed.url)


@pytest.fixture(scope="session")
def bucket(admin: S3Client) -> str:
    admin.create_bucket(Bucket="plain")
    return "plain"


@pytest.fixture(scope="session")
def versioned_bucket(admin: S3Client) -> str:
    admin.create_bucket(Bucket="versioned")
    admin.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    return "versioned"


@pytest.fixture
def make_s3_adapter(seaweed: EmbeddedS3, bucket: str) -> Iterator[MakeAdapter]:
    """Build S3Adapters on SeaweedFS with the access_key mode (secrets from a fake env)."""
    made: list[S3Adapter] = []

    def make(*, environ: dict[str, str] | None = None, **fields: Any) -> S3Adapter:
        settings: dict[str, Any] = {
            "name": "legacy",
            "type": "s3",
            "bucket": bucket,
            "endpoint_url": seaweed.url,
            "auth": ACCESS_KEY_AUTH,
            "retries": 1,
            "connect_timeout": 2,
            "read_timeout": 10,
            **fields,
        }
        secrets = SecretResolver(environ=dict(SECRETS if environ is None else environ))
        adapter = S3Adapter(S3Origin.model_validate(settings), secrets=secrets)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


# --- the conformance suite ------------------------------------------------------------------


class S3OriginUnderTest:
    """Seeds the bucket with boto3 the way any S3 client writes objects."""

    _META: ClassVar[dict[str, str]] = {
        "content_type": "ContentType",
        "content_encoding": "ContentEncoding",
        "cache_control": "CacheControl",
        "content_disposition": "ContentDisposition",
        "content_language": "ContentLanguage",
        "expires": "Expires",
        "metadata": "Metadata",
    }

    def __init__(self, client: S3Client, bucket: str, adapter: S3Adapter) -> None:
        self.client = client
        self.bucket = bucket
        self.adapter = adapter

    def put(self, key: str, data: bytes, **meta: Any) -> None:
        extra = {self._META[name]: value for name, value in meta.items()}
        self.client.put_object(Bucket=self.bucket, Key=PREFIX + key, Body=data, **extra)

    def replace(self, key: str, data: bytes) -> None:
        self.put(key, data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=PREFIX + key)


class TestS3AdapterConformance(AdapterConformance):
    """The shared suite on SeaweedFS with auth on, access_key mode, an unversioned bucket.

    SeaweedFS keeps user metadata, the standard headers, zero-byte objects and the CRC32
    boto3 sends on upload, so no capability is declared missing.
    """

    expected_checksums = frozenset({"md5", "crc32"})

    @pytest.fixture
    def target_bucket(self, bucket: str) -> str:
        return bucket

    @pytest.fixture
    def origin(
        self, admin: S3Client, target_bucket: str, make_s3_adapter: MakeAdapter
    ) -> S3OriginUnderTest:
        adapter = make_s3_adapter(bucket=target_bucket, prefix=PREFIX)
        return S3OriginUnderTest(admin, target_bucket, adapter)


class TestS3AdapterConformanceVersioned(TestS3AdapterConformance):
    """The same suite on a versioned bucket: tokens are the VersionId, and a read pinned
    to a replaced version still fails, although S3 keeps the old version readable."""

    @pytest.fixture
    def target_bucket(self, versioned_bucket: str) -> str:
        return versioned_bucket

    def test_versions_are_version_id_tokens(self, origin: S3OriginUnderTest, ns: str) -> None:
        origin.put(ns + "object.bin", b"data")
        info = origin.adapter.head(ns + "object.bin")
        assert info.version is not None
        assert info.version != info.etag
        stored = origin.adapter.get(ns + "object.bin")
        stored.close()
        assert stored.info.version == info.version  # the GET states the same VersionId

    def test_same_bytes_rewritten_is_another_version(
        self, origin: S3OriginUnderTest, ns: str
    ) -> None:
        origin.put(ns + "object.bin", b"same bytes")
        before = origin.adapter.head(ns + "object.bin")
        origin.replace(ns + "object.bin", b"same bytes")
        after = origin.adapter.head(ns + "object.bin")
        assert before.etag == after.etag
        assert before.version != after.version
        with pytest.raises(PreconditionFailed):
            origin.adapter.get(ns + "object.bin", GetOptions(pin=before))
        with pytest.raises(PreconditionFailed):
            origin.adapter.read(ns + "object.bin", version=before.version)
        assert origin.adapter.read_bytes(ns + "object.bin", version=after) == b"same bytes"


# --- checksums ---------------------------------------------------------------------------------


def test_single_part_etag_is_the_md5(make_s3_adapter: MakeAdapter, admin: S3Client) -> None:
    data = b"single part object\n" * 100
    admin.put_object(Bucket="plain", Key="md5/single", Body=data)
    info = make_s3_adapter().head("md5/single")
    assert info.checksums.md5 == hashlib.md5(data).digest()


def test_multipart_states_no_md5_and_no_composite_checksum(
    make_s3_adapter: MakeAdapter, admin: S3Client
) -> None:
    # SeaweedFS enforces S3's 5 MiB minimum for every part but the last.
    parts = [b"a" * (5 * 1024 * 1024), b"tail"]
    upload = admin.create_multipart_upload(
        Bucket="plain", Key="md5/multi", ChecksumAlgorithm="CRC32"
    )
    done: list[Any] = []
    for number, part in enumerate(parts, start=1):
        answer = admin.upload_part(
            Bucket="plain",
            Key="md5/multi",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=part,
            ChecksumAlgorithm="CRC32",
        )
        done.append(
            {"ETag": answer["ETag"], "PartNumber": number, "ChecksumCRC32": answer["ChecksumCRC32"]}
        )
    admin.complete_multipart_upload(
        Bucket="plain",
        Key="md5/multi",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": done},
    )
    raw = admin.head_object(Bucket="plain", Key="md5/multi", ChecksumMode="ENABLED")
    assert raw["ChecksumCRC32"].endswith("-2")  # a CRC32 of the parts' CRC32s
    adapter = make_s3_adapter()
    info = adapter.head("md5/multi")
    assert info.etag is not None
    assert info.etag.endswith('-2"')
    assert info.checksums.known() == {}
    assert adapter.read_bytes("md5/multi", range=ByteRange.suffix(4)) == b"tail"


def test_additional_checksums_are_read(make_s3_adapter: MakeAdapter, admin: S3Client) -> None:
    data = b"checksummed"
    admin.put_object(Bucket="plain", Key="sums/sha256", Body=data, ChecksumAlgorithm="SHA256")
    checksums = make_s3_adapter().head("sums/sha256").checksums
    assert checksums.sha256 == hashlib.sha256(data).digest()
    assert checksums.md5 == hashlib.md5(data).digest()


ETAG = '"5eb63bbbe01eeed093cb22bb8f5acdc3"'
MD5 = bytes.fromhex("5eb63bbbe01eeed093cb22bb8f5acdc3")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param({"ETag": ETAG}, {"md5": MD5}, id="plain"),
        pytest.param({"ETag": ETAG, "ServerSideEncryption": "AES256"}, {"md5": MD5}, id="sse-s3"),
        pytest.param({"ETag": ETAG, "ServerSideEncryption": "aws:kms"}, {}, id="sse-kms"),
        pytest.param({"ETag": ETAG, "ServerSideEncryption": "aws:kms:dsse"}, {}, id="dsse-kms"),
        pytest.param({"ETag": ETAG, "SSECustomerAlgorithm": "AES256"}, {}, id="sse-c"),
        pytest.param({"ETag": '"5eb63bbbe01eeed093cb22bb8f5acdc3-2"'}, {}, id="multipart"),
        pytest.param({"ETag": '"not-an-md5"'}, {}, id="opaque"),
        pytest.param(
            {"ChecksumCRC32C": "yZRlqg==", "ChecksumType": "FULL_OBJECT"},
            {"crc32c": bytes.fromhex("c99465aa")},
            id="crc32c-full-object",
        ),
        pytest.param(
            {"ChecksumCRC32C": "yZRlqg=="},
            {"crc32c": bytes.fromhex("c99465aa")},
            id="crc32c-untyped",
        ),
        pytest.param(
            {"ChecksumCRC32": "yZRlqg==", "ChecksumType": "COMPOSITE"}, {}, id="composite"
        ),
        pytest.param({"ChecksumSHA256": "yZRlqg==-3"}, {}, id="composite-untyped"),
        pytest.param({"ChecksumSHA1": "yZRlqg=="}, {}, id="wrong-length"),
        pytest.param({"ChecksumSHA1": "***"}, {}, id="not-base64"),
    ],
)
def test_checksums_from_head(response: dict[str, str], expected: dict[str, bytes]) -> None:
    assert checksums_from_head(response).known() == expected


def test_version_tokens() -> None:
    assert version_token('"abc"', None) == '"abc"'
    assert version_token('"abc"', "null") == '"abc"'  # versioning off or suspended
    assert version_token('"abc"', "3/L4kq+x|y") == "3/L4kq+x|y"
    assert version_token(None, None) is None


# --- errors ------------------------------------------------------------------------------------


def test_range_starting_at_eof_is_invalid(make_s3_adapter: MakeAdapter, admin: S3Client) -> None:
    admin.put_object(Bucket="plain", Key="ranges/ten", Body=b"0123456789")
    adapter = make_s3_adapter()
    with pytest.raises(InvalidRange) as caught:
        adapter.read("ranges/ten", range=ByteRange.from_offset(10))
    assert caught.value.__cause__ is not None  # S3's 416, translated
    assert adapter.read_bytes("ranges/ten", range=ByteRange.bounded(8, 100)) == b"89"


def test_wrong_secret_is_refused_without_retries(
    make_s3_adapter: MakeAdapter, admin: S3Client
) -> None:
    admin.put_object(Bucket="plain", Key="auth/object", Body=b"private")
    adapter = make_s3_adapter(environ={**SECRETS, "S3_SECRET_ACCESS_KEY": WRONG_SECRET}, retries=4)
    with pytest.raises(Unauthenticated) as caught:
        adapter.read("auth/object")
    cause: Any = caught.value.__cause__
    assert cause.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert cause.response["ResponseMetadata"]["RetryAttempts"] == 0
    # A HEAD answer has no body, so S3 cannot say why: a bare 403.
    with pytest.raises((Unauthenticated, PermissionDenied)) as head_caught:
        adapter.head("auth/object")
    head_cause: Any = head_caught.value.__cause__
    assert head_cause.response["ResponseMetadata"]["RetryAttempts"] == 0
    for error in (caught.value, head_caught.value):
        assert WRONG_SECRET not in str(error)
        assert "auth/object" in str(error)


def test_unknown_access_key_is_unauthenticated(
    make_s3_adapter: MakeAdapter, admin: S3Client
) -> None:
    admin.put_object(Bucket="plain", Key="auth/object", Body=b"private")
    adapter = make_s3_adapter(environ={**SECRETS, "S3_ACCESS_KEY_ID": "nobody-knows-me"})
    with pytest.raises(Unauthenticated) as caught:
        adapter.read("auth/object")
    cause: Any = caught.value.__cause__
    assert cause.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_missing_bucket_is_not_found(make_s3_adapter: MakeAdapter) -> None:
    with pytest.raises(ObjectNotFound):
        make_s3_adapter(bucket="no-such-bucket").read("key")


def test_unreachable_endpoint_is_transient() -> None:
    from backorigin.testing.servers import free_port

    config = S3Origin.model_validate(
        {
            "name": "down",
            "type": "s3",
            "bucket": "plain",
            "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "auth": ACCESS_KEY_AUTH,
            "retries": 0,
        }
    )
    with S3Adapter(config, secrets=SecretResolver(environ=SECRETS)) as adapter:
        with pytest.raises(TransientOriginError, match="cannot connect"):
            adapter.head("key")
        with pytest.raises(TransientOriginError):
            next(iter(adapter.list("")))


class _SlowDownHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request like an overloaded S3: 503 SlowDown, Retry-After: 7."""

    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = b"<Error><Code>SlowDown</Code><Message>Please reduce your rate</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Retry-After", "7")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_throttling_is_retried_by_botocore_then_transient() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowDownHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = S3Origin.model_validate(
            {
                "name": "busy",
                "type": "s3",
                "bucket": "plain",
                "endpoint_url": f"http://127.0.0.1:{server.server_address[1]}",
                "auth": ACCESS_KEY_AUTH,
                "retries": 1,
            }
        )
        with (
            S3Adapter(config, secrets=SecretResolver(environ=SECRETS)) as adapter,
            pytest.raises(TransientOriginError) as caught,
        ):
            adapter.read("key")
        assert caught.value.retry_after == 7
        assert _SlowDownHandler.hits == 2  # the request and botocore's one configured retry
    finally:
        server.shutdown()
        server.server_close()


def test_secrets_never_leak(
    make_s3_adapter: MakeAdapter, admin: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    admin.put_object(Bucket="plain", Key="auth/object", Body=b"private")
    adapter = make_s3_adapter(environ={**SECRETS, "S3_SECRET_ACCESS_KEY": WRONG_SECRET})
    good = make_s3_adapter()
    errors: list[Exception] = []
    # botocore at DEBUG logs canonical requests and headers; the secret must not be in them.
    with caplog.at_level(logging.DEBUG):
        for attempt in (lambda: adapter.head("auth/object"), lambda: adapter.read("x/y")):
            try:
                attempt()
            except OriginError as exc:
                errors.append(exc)
        good.head("auth/object")
        signed = good.sign(OriginRequest("GET", good.origin_uri("auth/object")))
    assert len(errors) == 2
    assert "CanonicalRequest" in caplog.text  # botocore's DEBUG output was captured
    texts = [repr(adapter), repr(good), caplog.text, *map(str, errors), *map(repr, errors)]
    texts += [repr(adapter.config), str(adapter.config.model_dump())]
    for text in texts:
        assert WRONG_SECRET not in text
        assert SECRET_KEY not in text
    assert SECRET_KEY not in json.dumps(dict(signed.headers))
    # The access key id is not a secret in AWS terms (it is in every Authorization header
    # and in botocore's DEBUG logs), but it stays out of the adapter's own messages.
    assert all(ACCESS_KEY not in str(error) for error in errors)


# --- the edge face: SigV4 checked by the server -----------------------------------------------


def fetch(adapter: S3Adapter, request: OriginRequest) -> urllib3.BaseHTTPResponse:
    """Send a signed origin request the way CloudFront would, to the adapter's origin."""
    spec = adapter.cloudfront_origin()
    query = f"?{request.querystring}" if request.querystring else ""
    url = f"{spec.protocol}://{spec.domain}:{spec.port}{spec.path}{request.uri}{query}"
    return urllib3.request(
        request.method, url, headers=dict(request.headers), retries=False, redirect=False
    )


def _viewer_headers_kept(request: OriginRequest) -> list[str]:
    return [value for value in request.headers.values() if value == "viewer"]


@pytest.mark.parametrize("name", ["plain.txt", "with space+plus/ünï%2Fcödé.txt"])
def test_a_signed_request_is_refused_once_cloudfront_adds_its_headers(
    make_s3_adapter: MakeAdapter,
    admin: S3Client,
    strict_s3: StrictS3Proxy,
    via_cloudfront: CloudFrontFetch,
    name: str,
) -> None:
    """Why validation keeps signing modes off the edge: the signature is right as made, and
    S3 refuses it once CloudFront has added X-Amz-Cf-Id (which the function cannot see)."""
    data = b"served through the edge " + name.encode()
    admin.put_object(Bucket="plain", Key=PREFIX + "edge/" + name, Body=data)
    adapter = make_s3_adapter(prefix=PREFIX, endpoint_url=strict_s3.url)
    request = OriginRequest(
        "GET",
        adapter.origin_uri("edge/" + name),
        headers={
            "accept": "*/*",
            "x-amz-meta-injected": "viewer",
            "authorization": "viewer",
            "x-amz-security-token": "viewer",
        },
    )
    signed = adapter.sign(request)
    assert signed.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert signed.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert "x-amz-date" in signed.headers
    assert "x-amz-security-token" not in signed.headers  # static keys have no token
    assert "x-amz-meta-injected" not in signed.headers
    assert not _viewer_headers_kept(signed)
    assert signed.headers["accept"] == "*/*"
    response = fetch(adapter, signed)  # sent as signed: accepted
    assert response.status == 200, response.data
    assert response.data == data
    # Range and conditionals are not signed, so a client may add or change them.
    ranged = fetch(adapter, signed.with_headers({"Range": "bytes=0-5"}))
    assert ranged.status == 206
    assert ranged.data == data[:6]
    behind_cloudfront = via_cloudfront(adapter.cloudfront_origin(), signed)
    assert behind_cloudfront.status == 403
    assert b"<HeadersNotSigned>x-amz-cf-id</HeadersNotSigned>" in behind_cloudfront.data


def test_signed_request_with_query_string(make_s3_adapter: MakeAdapter, admin: S3Client) -> None:
    admin.put_object(Bucket="plain", Key="edge/query", Body=b"q")
    adapter = make_s3_adapter()
    request = OriginRequest("GET", adapter.origin_uri("edge/query"), querystring="x-id=GetObject")
    response = fetch(adapter, adapter.sign(request))
    assert response.status == 200, response.data
    assert response.data == b"q"


def test_request_signed_with_a_wrong_secret_is_refused(
    make_s3_adapter: MakeAdapter, admin: S3Client
) -> None:
    admin.put_object(Bucket="plain", Key="edge/private", Body=b"private")
    adapter = make_s3_adapter(environ={**SECRETS, "S3_SECRET_ACCESS_KEY": WRONG_SECRET})
    response = fetch(
        adapter, adapter.sign(OriginRequest("GET", adapter.origin_uri("edge/private")))
    )
    assert response.status == 403
    assert b"SignatureDoesNotMatch" in response.data
    unsigned = OriginRequest("GET", adapter.origin_uri("edge/private"))
    assert fetch(adapter, unsigned).status == 403


def test_default_chain_reads_and_signs(
    make_s3_adapter: MakeAdapter,
    admin: S3Client,
    monkeypatch: pytest.MonkeyPatch,
    strict_s3: StrictS3Proxy,
    via_cloudfront: CloudFrontFetch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    admin.put_object(Bucket="plain", Key="default/object", Body=b"from the chain")
    adapter = make_s3_adapter(auth={"mode": "default"}, environ={}, endpoint_url=strict_s3.url)
    assert adapter.read_bytes("default/object") == b"from the chain"
    signed = adapter.sign(OriginRequest("GET", adapter.origin_uri("default/object")))
    assert fetch(adapter, signed).data == b"from the chain"
    assert via_cloudfront(adapter.cloudfront_origin(), signed).status == 403


# --- auth mode anonymous: a public bucket, the mode that works behind CloudFront ---------------


def test_anonymous_reads_a_public_bucket_and_passes_behind_cloudfront(
    make_s3_adapter: MakeAdapter,
    admin: S3Client,
    public_bucket: str,
    strict_s3: StrictS3Proxy,
    via_cloudfront: CloudFrontFetch,
) -> None:
    data = b"public bytes " * 20
    admin.put_object(Bucket=public_bucket, Key="pub/a b.txt", Body=data)
    adapter = make_s3_adapter(
        bucket=public_bucket, auth={"mode": "anonymous"}, environ={}, endpoint_url=strict_s3.url
    )
    assert adapter.read_bytes("pub/a b.txt") == data
    assert adapter.head("pub/a b.txt").size == len(data)
    assert [info.key for info in adapter.list("pub/")] == ["pub/a b.txt"]
    viewer = {"authorization": "viewer", "x-amz-date": "viewer", "range": "bytes=0-11"}
    signed = adapter.sign(OriginRequest("GET", adapter.origin_uri("pub/a b.txt"), headers=viewer))
    assert dict(signed.headers) == {"range": "bytes=0-11"}
    refused = len(strict_s3.refused)
    response = via_cloudfront(adapter.cloudfront_origin(), signed)
    assert strict_s3.refused[refused:] == []
    assert response.status == 206
    assert response.data == data[:12]


def test_anonymous_sends_no_credentials_even_when_the_environment_has_some(
    make_s3_adapter: MakeAdapter, admin: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    admin.put_object(Bucket="plain", Key="anon/private", Body=b"private")
    adapter = make_s3_adapter(auth={"mode": "anonymous"}, environ={})
    # The private bucket refuses: the environment's (valid) keys were not used.
    with pytest.raises(PermissionDenied):
        adapter.read_bytes("anon/private")


# --- config and the CloudFront origin ---------------------------------------------------------


def origin_of(**fields: Any) -> S3Adapter:
    config = S3Origin.model_validate({"name": "o", "type": "s3", "bucket": "media", **fields})
    return S3Adapter(config)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"region": "eu-west-1"},
            ("media.s3.eu-west-1.amazonaws.com", "", "https", 443),
            id="aws",
        ),
        pytest.param(
            {"region": "eu-west-1", "bucket": "media.example.com"},
            ("s3.eu-west-1.amazonaws.com", "/media.example.com", "https", 443),
            id="aws-dotted-bucket",
        ),
        pytest.param(
            {"region": "eu-west-1", "addressing_style": "path"},
            ("s3.eu-west-1.amazonaws.com", "/media", "https", 443),
            id="aws-path",
        ),
        pytest.param(
            {"region": "cn-north-1"},
            ("media.s3.cn-north-1.amazonaws.com.cn", "", "https", 443),
            id="aws-china",
        ),
        pytest.param(
            {"endpoint_url": "http://objects.internal:9000"},
            ("objects.internal", "/media", "http", 9000),
            id="endpoint",
        ),
        pytest.param(
            {"endpoint_url": "https://objects.example.com/s3/", "addressing_style": "virtual"},
            ("media.objects.example.com", "/s3", "https", 443),
            id="endpoint-virtual",
        ),
    ],
)
def test_cloudfront_origin(fields: dict[str, Any], expected: tuple[str, str, str, int]) -> None:
    spec = origin_of(**fields).cloudfront_origin()
    assert (spec.domain, spec.path, spec.protocol, spec.port) == expected


def test_registered_as_s3() -> None:
    config = S3Origin.model_validate(
        {"name": "o", "type": "s3", "bucket": "media", "region": "eu-west-1"}
    )
    assert isinstance(create_adapter(config), S3Adapter)


def test_module_is_cheap_to_import_and_build() -> None:
    """The edge function loads adapter classes on its hot path: no boto3 until a request."""
    code = (
        "import sys, json;"
        "from backorigin.adapters.s3 import S3Adapter;"
        "from backorigin.config.origins import S3Origin;"
        "a = S3Adapter(S3Origin(name='o', type='s3', bucket='media', region='eu-west-1'));"
        "a.cloudfront_origin();"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('boto3', 'botocore', 's3transfer'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(out) == []


EDGE_CONFIG = """\
bucket: {{name: media-new, region: eu-west-1}}
origins:
  - name: old
    type: s3
    bucket: media-old
{extra}
"""


def test_aws_origin_without_region_is_rejected_at_the_edge() -> None:
    anonymous = "    auth: {mode: anonymous}\n"
    with pytest.raises(ConfigError, match="region is not set"):
        load_config(EDGE_CONFIG.format(extra=anonymous))
    load_config(EDGE_CONFIG.format(extra=anonymous + "    region: eu-west-2"))
    load_config(EDGE_CONFIG.format(extra=anonymous + "    endpoint_url: https://o.example.com"))


@pytest.mark.parametrize(
    "auth",
    [
        "{mode: default}",
        "{mode: access_key, access_key_id: {secret: {env: A}}, "
        "secret_access_key: {secret: {env: B}}}",
        "{mode: assume_role, role_arn: 'arn:aws:iam::123456789012:role/r'}",
    ],
)
@pytest.mark.parametrize("where", ["    region: eu-west-2", "    endpoint_url: https://o.example"])
def test_signing_modes_are_refused_at_the_edge_and_allowed_in_fallback(
    auth: str, where: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(EDGE_CONFIG.format(extra=f"{where}\n    auth: {auth}"))
    message = str(caught.value)
    assert "origins[0].auth" in message
    assert "X-Amz-Cf-Id" in message
    assert "fallback" in message
    assert "anonymous" in message
    fallback_only = EDGE_CONFIG.format(extra=f"{where}\n    auth: {auth}") + (
        "  - {name: web, type: http, base_url: 'https://old.example.com/'}\n"
        "routes:\n  - {prefix: '', origin: web, fallback: [old]}\n"
    )
    assert load_config(fallback_only).origins[0].name == "old"


# --- assume_role, on moto (STS and S3 in one server) ------------------------------------------

BASE_KEY = "AKIABASEIDENTITY0001"
ROLE_ARN = "arn:aws:iam::123456789012:role/backorigin-reader"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def base_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default chain's identity (the fetcher's role, in production)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", BASE_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "base-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.mark.usefixtures("base_identity")
def test_assume_role_reads_with_the_assumed_credentials(
    moto_url: str, via_cloudfront: CloudFrontFetch
) -> None:
    cloudfront_fetch = via_cloudfront
    moto = admin_client(moto_url, BASE_KEY, "base-secret")
    name = f"assumed-{uuid.uuid4().hex[:8]}"
    moto.create_bucket(Bucket=name)
    moto.put_object(Bucket=name, Key="k/object", Body=b"read as the role")
    moto.put_object(Bucket=name, Key="k/kms", Body=b"encrypted", ServerSideEncryption="aws:kms")
    config = S3Origin.model_validate(
        {
            "name": "other-account",
            "type": "s3",
            "bucket": name,
            "region": "us-east-1",
            "endpoint_url": moto_url,
            "retries": 0,
            "auth": {
                "mode": "assume_role",
                "role_arn": ROLE_ARN,
                "external_id": "migration-2024",
                "session_name": "backorigin-test",
                "sts_endpoint_url": moto_url,
            },
        }
    )
    with S3Adapter(config) as adapter:
        assert adapter.read_bytes("k/object") == b"read as the role"
        kms = adapter.head("k/kms")
        assert kms.checksums.md5 is None  # an SSE-KMS ETag is not the MD5 of the data
        signed = adapter.sign(OriginRequest("GET", adapter.origin_uri("k/object")))
    assert "x-amz-security-token" in signed.headers
    credential = signed.headers["authorization"].split("Credential=")[1].split("/")[0]
    assert credential != BASE_KEY
    # moto knows the key as the role's session: AssumeRole really happened.
    sts = boto3.client(
        "sts",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id=credential,
        aws_secret_access_key="unused-by-moto",
    )
    arn = sts.get_caller_identity()["Arn"]
    assert arn == "arn:aws:sts::123456789012:assumed-role/backorigin-reader/backorigin-test"
    assert fetch(adapter, signed).data == b"read as the role"
    # Behind CloudFront, S3's rule refuses it: moto would not, so the strict proxy stands in.
    with StrictS3Proxy(moto_url) as strict:
        fields = {**config.model_dump(), "endpoint_url": strict.url}
        with S3Adapter(S3Origin.model_validate(fields)) as behind:
            request = behind.sign(OriginRequest("GET", behind.origin_uri("k/object")))
            assert fetch(behind, request).data == b"read as the role"
            refused = cloudfront_fetch(behind.cloudfront_origin(), request)
    assert refused.status == 403
    assert b"x-amz-cf-id" in refused.data


def test_assume_role_without_a_base_identity_is_unauthenticated(
    moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    # Nothing else in the chain either: no files, no container or instance metadata.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    config = S3Origin.model_validate(
        {
            "name": "other-account",
            "type": "s3",
            "bucket": "whatever",
            "endpoint_url": moto_url,
            "auth": {"mode": "assume_role", "role_arn": ROLE_ARN, "sts_endpoint_url": moto_url},
        }
    )
    with S3Adapter(config) as adapter:
        with pytest.raises(Unauthenticated, match="no identity to assume"):
            adapter.head("key")
        with pytest.raises(Unauthenticated):
            adapter.sign(OriginRequest("GET", "/key"))
