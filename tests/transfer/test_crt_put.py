"""The CRT putter sends the PutObject botocore would send, and reads answers as botocore does.

Both are sent through one recording proxy to SeaweedFS, with the same parameters, and what
arrives is compared header by header; the stored objects are compared too.
"""

from __future__ import annotations

import base64
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, HTTPClientError

from backorigin.config.models import BucketConfig
from backorigin.testing.servers import free_port
from backorigin.transfer.bucket import make_s3_client
from backorigin.transfer.crt_put import CrtPutter
from backorigin.transfer.digest import crc32c
from net_support import TamperingProxy, make_authority

DATA = b"a body of some bytes\n" * 3000
PARAMS: dict[str, Any] = {
    "ContentType": "text/plain; charset=utf-8",
    "CacheControl": "public, max-age=60",
    "ContentDisposition": 'attachment; filename="report.txt"',
    "ContentLanguage": "en",
    "Expires": datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC),
    "Metadata": {"colour": "blue", "backorigin-origin": "legacy"},
    "ChecksumCRC32C": base64.b64encode(crc32c(DATA).to_bytes(4, "big")).decode(),
    "IfNoneMatch": "*",
}
COMPARED = (
    "content-type",
    "cache-control",
    "content-disposition",
    "content-language",
    "expires",
    "x-amz-meta-colour",
    "x-amz-meta-backorigin-origin",
    "x-amz-checksum-crc32c",
    "if-none-match",
    "content-length",
    "host",
)


@pytest.fixture
def proxy(seaweedfs: Any) -> Iterator[TamperingProxy]:
    with TamperingProxy(seaweedfs.url, lambda method, path, body: body) as recording:
        yield recording


@pytest.fixture
def client(proxy: TamperingProxy, bucket: str, s3_credentials: dict[str, str]) -> Any:
    return make_s3_client(
        BucketConfig(name=bucket, endpoint_url=proxy.url, region="us-east-1"),
        aws_access_key_id=s3_credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_credentials["AWS_SECRET_ACCESS_KEY"],
    )


def sent(proxy: TamperingProxy, key: str) -> tuple[str, dict[str, str]]:
    for forwarded in proxy.forwarded:
        path = urllib.parse.unquote(urllib.parse.urlsplit(forwarded.path).path)
        if forwarded.method == "PUT" and path.endswith("/" + key):
            return forwarded.path, forwarded.headers
    raise AssertionError(f"no PUT of {key} went through the proxy")


@pytest.mark.parametrize("suffix", ["plain.txt", "dir/with space+plus~tilde%.txt", "ü/ñ.bin"])
def test_the_putter_sends_the_request_botocore_sends(
    client: Any, proxy: TamperingProxy, bucket: str, s3_client: Any, suffix: str
) -> None:
    putter = CrtPutter.for_client(client, bucket)
    assert putter is not None
    client.put_object(Bucket=bucket, Key="botocore/" + suffix, Body=DATA, **PARAMS)
    answer = putter.put("crt/" + suffix, DATA, PARAMS)

    boto_path, boto_headers = sent(proxy, "botocore/" + suffix)
    crt_path, crt_headers = sent(proxy, "crt/" + suffix)
    assert crt_path.replace("/crt/", "/botocore/", 1) == boto_path
    for name in COMPARED:
        assert crt_headers.get(name) == boto_headers.get(name), name
    assert crt_headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")

    via_botocore = s3_client.head_object(Bucket=bucket, Key="botocore/" + suffix)
    via_crt = s3_client.head_object(Bucket=bucket, Key="crt/" + suffix)
    assert answer["etag"] == via_crt["ETag"] == via_botocore["ETag"]
    for field in ("ContentType", "CacheControl", "ContentDisposition", "ContentLanguage"):
        assert via_crt[field] == via_botocore[field] == PARAMS[field], field
    assert via_crt["Metadata"] == via_botocore["Metadata"] == PARAMS["Metadata"]
    stored = s3_client.get_object(Bucket=bucket, Key="crt/" + suffix)["Body"].read()
    assert stored == DATA


def test_an_error_answer_is_the_client_error_botocore_raises(client: Any, bucket: str) -> None:
    putter = CrtPutter.for_client(client, bucket)
    assert putter is not None
    putter.put("taken.txt", DATA, PARAMS)
    with pytest.raises(ClientError) as via_crt:
        putter.put("taken.txt", DATA, PARAMS)
    with pytest.raises(ClientError) as via_botocore:
        client.put_object(Bucket=bucket, Key="taken.txt", Body=DATA, **PARAMS)
    for raised in (via_crt.value, via_botocore.value):
        assert raised.response["Error"]["Code"] == "PreconditionFailed"
        assert raised.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        assert raised.operation_name == "PutObject"


def test_a_body_that_fails_its_checksum_is_refused(client: Any, bucket: str) -> None:
    putter = CrtPutter.for_client(client, bucket)
    assert putter is not None
    wrong = {**PARAMS, "ChecksumCRC32C": base64.b64encode(b"\0\0\0\0").decode()}
    with pytest.raises(ClientError) as raised:
        putter.put("bad-digest.txt", DATA, wrong)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_server_that_does_not_answer_is_an_http_client_error(bucket: str) -> None:
    config = BucketConfig(name=bucket, endpoint_url=f"http://127.0.0.1:{free_port()}")
    dead = make_s3_client(config, aws_access_key_id="key", aws_secret_access_key="secret")
    putter = CrtPutter.for_client(dead, bucket)
    assert putter is not None
    with pytest.raises(HTTPClientError):
        putter.put("nowhere.txt", DATA, {})


def aws_client(region: str = "us-east-1", **config: Any) -> Any:
    """A signing client for Amazon S3 itself (nothing is sent to it)."""
    return boto3.client(
        "s3",
        region_name=region,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=BotoConfig(**config),
    )


def test_amazon_s3_is_addressed_as_botocore_addresses_it() -> None:
    client = aws_client("eu-west-3")
    putter = CrtPutter.for_client(client, "my-bucket")
    assert putter is not None
    assert putter.address == ("my-bucket.s3.eu-west-3.amazonaws.com", "/")
    dotted = CrtPutter.for_client(client, "my.dotted.bucket")
    assert dotted is not None
    assert dotted.address == ("s3.eu-west-3.amazonaws.com", "/my.dotted.bucket/")


def test_an_unsigned_client_keeps_botocore() -> None:
    client = aws_client(signature_version=UNSIGNED)  # keys given, yet nothing is signed
    assert CrtPutter.for_client(client, "public-bucket") is None


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
def test_a_client_behind_a_proxy_keeps_botocore(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "http://proxy.example:3128")
    client = aws_client()
    assert CrtPutter.for_client(client, "my-bucket") is None
    monkeypatch.setenv("NO_PROXY", ".amazonaws.com")
    assert CrtPutter.for_client(client, "my-bucket") is not None


def test_a_client_configured_with_a_proxy_keeps_botocore() -> None:
    client = aws_client(proxies={"https": "http://proxy.example:3128"})
    assert CrtPutter.for_client(client, "my-bucket") is None


@pytest.fixture
def eager_switching() -> Iterator[None]:
    """Threads switch as often as the interpreter allows, so that calls interleave on every
    run rather than only on a busy machine."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def test_putters_built_on_a_shared_client_leave_its_other_puts_alone(
    client: Any, proxy: TamperingProxy, bucket: str, s3_client: Any, eager_switching: None
) -> None:
    """Copy engines share one client: building a putter must neither answer another thread's
    PutObject nor let a probe request out, however the threads interleave."""
    builders, writers, rounds = 12, 12, 3
    putters: list[CrtPutter | None] = []
    written: list[str] = []
    lock = threading.Lock()

    def build(barrier: threading.Barrier) -> None:
        barrier.wait(timeout=60)
        putter = CrtPutter.for_client(client, bucket)
        with lock:
            putters.append(putter)

    def write(barrier: threading.Barrier, key: str) -> None:
        barrier.wait(timeout=60)
        client.put_object(Bucket=bucket, Key=key, Body=key.encode())
        with lock:
            written.append(key)

    for round_ in range(rounds):
        barrier = threading.Barrier(builders + writers)
        threads = [threading.Thread(target=build, args=(barrier,)) for _ in range(builders)]
        threads += [
            threading.Thread(target=write, args=(barrier, f"shared/{round_}/{n}.txt"))
            for n in range(writers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    assert len(putters) == builders * rounds
    host = urllib.parse.urlsplit(proxy.url).netloc
    assert {p.address if p else None for p in putters} == {(host, f"/{bucket}/")}
    assert len(written) == writers * rounds
    for key in written:
        assert s3_client.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
        sent(proxy, key)
    assert not [f.path for f in proxy.forwarded if "backorigin-probe" in f.path]


@pytest.fixture
def tls_proxy(
    seaweedfs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TamperingProxy, Path]]:
    """A recording proxy to SeaweedFS that speaks TLS with a certificate of a test CA.

    The machine's own CA bundle settings are cleared: each test says what the client trusts.
    """
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    authority = make_authority(tmp_path / "ca")
    with TamperingProxy(
        seaweedfs.url, lambda method, path, body: body, tls=authority.server_context()
    ) as recording:
        yield recording, authority.ca_file


def tls_client(endpoint: str, credentials: dict[str, str], verify: bool | str | None) -> Any:
    """A client for ``endpoint`` that verifies its certificate as ``verify`` says."""
    return boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint,
        verify=verify,
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        config=BotoConfig(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # verify=False
@pytest.mark.parametrize("trust", ["verify=ca.pem", "AWS_CA_BUNDLE=ca.pem", "verify=False"])
def test_over_tls_the_putter_trusts_what_the_client_trusts(
    trust: str,
    tls_proxy: tuple[TamperingProxy, Path],
    bucket: str,
    s3_client: Any,
    s3_credentials: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy, ca_file = tls_proxy
    verify: bool | str | None = None
    if trust == "verify=ca.pem":
        verify = str(ca_file)
    elif trust == "verify=False":
        verify = False
    else:
        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_file))
    client = tls_client(proxy.url, s3_credentials, verify)
    putter = CrtPutter.for_client(client, bucket)
    assert putter is not None
    answer = putter.put("tls/object.txt", DATA, {"ContentType": "text/plain"})
    client.put_object(Bucket=bucket, Key="tls/botocore.txt", Body=DATA)  # botocore agrees
    stored = s3_client.head_object(Bucket=bucket, Key="tls/object.txt")
    assert stored["ETag"] == answer["etag"]
    assert [f.method for f in proxy.forwarded if f.path.endswith("/tls/object.txt")] == ["PUT"]


def test_over_tls_a_server_the_client_does_not_trust_is_refused(
    tls_proxy: tuple[TamperingProxy, Path], bucket: str, s3_client: Any, s3_credentials: Any
) -> None:
    proxy, _ = tls_proxy
    client = tls_client(proxy.url, s3_credentials, None)  # the default trust: no test CA
    putter = CrtPutter.for_client(client, bucket)
    assert putter is not None
    # The CRT retries a failed handshake, each failure held back 10-30 s by s2n's blinding;
    # one attempt shows the refusal.
    putter.timeout = 1.0
    with pytest.raises(HTTPClientError):
        putter.put("tls/untrusted.txt", DATA, {})
    assert proxy.forwarded == []
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket, Prefix="tls/")
