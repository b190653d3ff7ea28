"""The Azure Blob adapter on Azurite: the conformance suite in every auth mode, edge signing
proven by the server (Azurite validates SAS and Shared Key signatures), error mapping,
retries and secret hygiene."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import urllib3
from azure.storage.blob import (
    BlobBlock,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    ContentSettings,
    generate_container_sas,
)
from cloudfront_support import as_cloudfront_sends
from pydantic import ValidationError

from backorigin.adapters import adapter_class
from backorigin.adapters.azure import AzureAdapter, account_endpoint, parse_connection_string
from backorigin.config.origins import AzureOrigin
from backorigin.config.secrets import SecretResolver
from backorigin.errors import (
    InvalidKey,
    ObjectNotFound,
    PermissionDenied,
    PreconditionFailed,
    TransientOriginError,
    Unauthenticated,
)
from backorigin.testing.conformance import AdapterConformance, payload
from backorigin.testing.servers import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, free_port
from backorigin.types import ByteRange, OriginRequest, OriginSpec

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "pfx/"
MODES = ["anonymous", "sas", "account_key", "connection_string"]
HTTP_LOG = "azure.core.pipeline.policies.http_logging_policy"
# A valid base64 key that is not the account's: signatures made with it are wrong.
WRONG_KEY = "A" * 86 + "=="

AUTH: dict[str, dict[str, Any]] = {
    "anonymous": {"mode": "anonymous"},
    "sas": {"mode": "sas", "token": {"secret": {"env": "AZ_SAS"}}},
    "account_key": {"mode": "account_key", "account_key": {"secret": {"env": "AZ_KEY"}}},
    "connection_string": {
        "mode": "connection_string",
        "connection_string": {"secret": {"env": "AZ_CONN"}},
    },
}


# --- fixtures: one Azurite per session, one private and one public container --------------


@dataclass
class Store:
    server: Azurite
    service: BlobServiceClient
    private: str
    public: str
    environ: dict[str, str]

    def container(self, name: str) -> ContainerClient:
        return self.service.get_container_client(name)

    def sas(self, *, key: str = AZURITE_KEY, expiry: timedelta = timedelta(days=1)) -> str:
        """A container SAS (read + list) on the private container."""
        now = datetime.now(UTC)
        return generate_container_sas(
            AZURITE_ACCOUNT,
            self.private,
            account_key=key,
            permission=ContainerSasPermissions(read=True, list=True),
            start=now - timedelta(hours=2),
            expiry=now + expiry,
        )


@pytest.fixture(scope="session")
def store(azurite: Any) -> Store:
    server: Azurite = azurite
    service = BlobServiceClient.from_connection_string(server.connection_string)
    private, public = f"private-{uuid.uuid4().hex[:8]}", f"public-{uuid.uuid4().hex[:8]}"
    service.create_container(private)
    service.create_container(public, public_access="container")
    result = Store(server, service, private, public, {})
    result.environ.update(
        {"AZ_KEY": AZURITE_KEY, "AZ_CONN": server.connection_string, "AZ_SAS": result.sas()}
    )
    return result


MakeAdapter = Callable[..., AzureAdapter]


@pytest.fixture
def make_adapter(store: Store) -> Iterator[MakeAdapter]:
    """Build AzureAdapters on Azurite: no retries and no backoff unless asked for."""
    made: list[AzureAdapter] = []

    def make(
        mode: str,
        *,
        environ: dict[str, str] | None = None,
        chunk_size: int = 256 * 1024,
        list_page_size: int = 1000,
        ttl: float = 300.0,
        **fields: Any,
    ) -> AzureAdapter:
        settings: dict[str, Any] = {
            "name": f"blobs-{mode}",
            "type": "azure",
            "account_url": store.server.account_url,
            "container": store.public if mode == "anonymous" else store.private,
            "auth": AUTH[mode],
            "retries": 0,
            "backoff": 0,
            "connect_timeout": 2,
            "read_timeout": 10,
            **fields,
        }
        secrets = SecretResolver(ttl=ttl, environ=store.environ if environ is None else environ)
        adapter = AzureAdapter(
            AzureOrigin.model_validate(settings),
            secrets=secrets,
            chunk_size=chunk_size,
            list_page_size=list_page_size,
        )
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


def requests_sent(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The request lines azure-core logged, one per attempt (it logs after the retry policy)."""
    return [
        r.getMessage().splitlines()[0]
        for r in caplog.records
        if r.name == HTTP_LOG and r.getMessage().startswith("Request URL")
    ]


# --- the conformance suite, in every auth mode ----------------------------------------------


class AzureOriginUnderTest:
    """Seeds the container the adapter reads, through the SDK with the account key."""

    def __init__(self, adapter: AzureAdapter, container: ContainerClient) -> None:
        self.adapter = adapter
        self.container = container

    def put(self, key: str, data: bytes, **meta: Any) -> None:
        settings = ContentSettings(
            content_type=meta.get("content_type"),
            content_encoding=meta.get("content_encoding"),
            content_language=meta.get("content_language"),
            content_disposition=meta.get("content_disposition"),
            cache_control=meta.get("cache_control"),
        )
        # meta["expires"] is dropped: Azure blobs have no Expires property.
        self.container.upload_blob(
            PREFIX + key,
            data,
            overwrite=True,
            content_settings=settings,
            metadata=dict(meta.get("metadata") or {}) or None,
        )

    def replace(self, key: str, data: bytes) -> None:
        self.container.upload_blob(PREFIX + key, data, overwrite=True)

    def delete(self, key: str) -> None:
        self.container.delete_blob(PREFIX + key)


class TestAzureAdapterConformance(AdapterConformance):
    # Single-shot uploads (Put Blob) get a Content-MD5 from the service; blobs committed from
    # staged blocks do not (see test_staged_blocks_carry_no_md5_unless_set_at_commit).
    expected_checksums = frozenset({"md5"})
    supports_expires = "Azure blobs have no Expires property"

    @pytest.fixture(params=MODES)
    def origin(
        self, request: pytest.FixtureRequest, store: Store, make_adapter: MakeAdapter
    ) -> AzureOriginUnderTest:
        mode = request.param
        adapter = make_adapter(mode, prefix=PREFIX)
        container = store.container(store.public if mode == "anonymous" else store.private)
        return AzureOriginUnderTest(adapter, container)


# --- the edge face, proven by the server ----------------------------------------------------


def fetch(
    adapter: AzureAdapter, request: OriginRequest, *, sign: bool = True
) -> urllib3.BaseHTTPResponse:
    """Send ``request`` the way CloudFront would: origin + origin path + uri + query, with
    the headers CloudFront adds after the origin-request trigger (``X-Amz-Cf-Id``, ``Via``,
    ``X-Forwarded-For``, ``User-Agent``), which no signature made in the trigger covers."""
    spec = adapter.cloudfront_origin()
    signed = adapter.sign(request) if sign else request
    url = f"{spec.protocol}://{spec.domain}:{spec.port}{spec.path}{signed.uri}"
    if signed.querystring:
        url += "?" + signed.querystring
    headers = as_cloudfront_sends(signed)
    assert headers["X-Amz-Cf-Id"]
    return urllib3.request(signed.method, url, headers=headers, retries=False, decode_content=False)


def test_cloudfront_origin_of_a_real_account() -> None:
    config = AzureOrigin.model_validate(
        {
            "name": "blobs",
            "type": "azure",
            "account_url": "https://oldassets.blob.core.windows.net/",
            "container": "$web",
            "prefix": "site/",
        }
    )
    adapter = AzureAdapter(config)
    assert adapter.cloudfront_origin() == OriginSpec(
        domain="oldassets.blob.core.windows.net", path="/$web", protocol="https", port=443
    )
    assert adapter.origin_uri("a b/ü.txt") == "/site/a%20b/%C3%BC.txt"


def test_cloudfront_origin_of_the_emulator(store: Store, make_adapter: MakeAdapter) -> None:
    spec = make_adapter("account_key").cloudfront_origin()
    assert spec == OriginSpec(
        domain="127.0.0.1",
        path=f"/{AZURITE_ACCOUNT}/{store.private}",
        protocol="http",
        port=store.server.port,
    )


@pytest.mark.parametrize(
    ("url", "account", "path", "port"),
    [
        ("https://acct.blob.core.windows.net", "acct", "", 443),
        ("https://acct.blob.core.windows.net/", "acct", "", 443),
        ("http://127.0.0.1:10000/devstoreaccount1", "devstoreaccount1", "/devstoreaccount1", 10000),
        ("http://localhost:9/devstoreaccount1/", "devstoreaccount1", "/devstoreaccount1", 9),
    ],
)
def test_account_endpoint(url: str, account: str, path: str, port: int) -> None:
    endpoint = account_endpoint(url)
    assert (endpoint.account, endpoint.path, endpoint.port) == (account, path, port)


def test_connection_string_values_keep_their_equals_signs() -> None:
    text = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=abc+/==;EndpointSuffix=x;"
    assert parse_connection_string(text) == {
        "defaultendpointsprotocol": "https",
        "accountname": "acct",
        "accountkey": "abc+/==",
        "endpointsuffix": "x",
    }
    with pytest.raises(ValueError, match="segment 2") as caught:
        parse_connection_string("AccountName=acct;secret-without-equals")
    assert "secret-without-equals" not in str(caught.value)


def test_anonymous_sign_leaves_the_request_unchanged(
    store: Store, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter("anonymous", prefix=PREFIX)
    store.container(store.public).upload_blob(PREFIX + "edge/open.txt", b"open", overwrite=True)
    request = OriginRequest("GET", adapter.origin_uri("edge/open.txt"), "utm=1")
    assert adapter.sign(request) is request
    response = fetch(adapter, request)
    assert (response.status, response.data) == (200, b"open")


@pytest.mark.parametrize("mode", ["sas", "account_key", "connection_string", "cs_sas"])
def test_signed_edge_request_is_accepted_by_the_server(
    store: Store, make_adapter: MakeAdapter, mode: str
) -> None:
    environ = dict(store.environ)
    if mode == "cs_sas":  # a connection string that carries a SAS instead of a key
        environ["AZ_CONN"] = (
            f"BlobEndpoint={store.server.account_url};SharedAccessSignature={store.sas()}"
        )
    adapter = make_adapter(
        "connection_string" if mode == "cs_sas" else mode, prefix=PREFIX, environ=environ
    )
    key = f"edge/{mode}/with space+plus/ünï.txt"
    data = payload(3000, key)
    store.container(store.private).upload_blob(PREFIX + key, data, overwrite=True)
    uri = adapter.origin_uri(key)

    unsigned = fetch(adapter, OriginRequest("GET", uri), sign=False)
    assert unsigned.status == 403  # the container is private: the signature is what counts

    response = fetch(adapter, OriginRequest("GET", uri, "utm=1&comp=list"))
    assert (response.status, response.data) == (200, data)

    ranged = fetch(adapter, OriginRequest("GET", uri, headers={"range": "bytes=100-199"}))
    assert (ranged.status, ranged.data) == (206, data[100:200])

    signed = adapter.sign(OriginRequest("GET", uri, "utm=1&comp=list"))
    query = parse_qs(signed.querystring)
    assert query["utm"] == ["1"]  # viewer parameters are kept…
    assert "comp" not in query  # …except those that would select another operation
    assert signed.headers["x-ms-version"] == query["sv"][0]


def test_edge_sas_from_a_key_is_short_lived_read_only_and_for_one_blob(
    store: Store, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter("account_key", prefix=PREFIX)
    container = store.container(store.private)
    container.upload_blob(PREFIX + "edge/one", b"one", overwrite=True)
    container.upload_blob(PREFIX + "edge/two", b"two", overwrite=True)
    signed = adapter.sign(OriginRequest("GET", adapter.origin_uri("edge/one")))
    query = {name: values[0] for name, values in parse_qs(signed.querystring).items()}
    assert (query["sp"], query["sr"]) == ("r", "b")
    start = datetime.fromisoformat(query["st"])
    expiry = datetime.fromisoformat(query["se"])
    assert timedelta(minutes=19) <= expiry - start <= timedelta(minutes=21)
    assert start < datetime.now(UTC) < expiry

    other = OriginRequest("GET", adapter.origin_uri("edge/two"), signed.querystring)
    assert fetch(adapter, other, sign=False).status == 403  # the SAS names one blob
    write = OriginRequest("PUT", signed.uri, signed.querystring, {"x-ms-blob-type": "BlockBlob"})
    assert fetch(adapter, write, sign=False).status == 403  # and only reading it
    assert container.download_blob(PREFIX + "edge/one").readall() == b"one"


def test_sign_refuses_uris_outside_the_prefix(make_adapter: MakeAdapter) -> None:
    adapter = make_adapter("account_key", prefix=PREFIX)
    for uri in ("/elsewhere/x", "/pfx/../x", "/pfx/%ZZ", "x"):
        with pytest.raises(InvalidKey):
            adapter.sign(OriginRequest("GET", uri))


@pytest.mark.parametrize("case", ["wrong_key", "expired_sas", "sas_of_wrong_key"])
def test_bad_credentials_are_refused_quickly(
    store: Store, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    environ = dict(store.environ)
    if case == "wrong_key":
        environ["AZ_KEY"] = WRONG_KEY
        mode = "account_key"
    else:
        mode = "sas"
        environ["AZ_SAS"] = (
            store.sas(expiry=-timedelta(hours=1))
            if case == "expired_sas"
            else store.sas(key=WRONG_KEY)
        )
    adapter = make_adapter(mode, prefix=PREFIX, environ=environ, retries=3, backoff=5)
    store.container(store.private).upload_blob(PREFIX + "auth/x", b"x", overwrite=True)

    # The edge's signature is judged by the server…
    assert fetch(adapter, OriginRequest("GET", adapter.origin_uri("auth/x"))).status == 403

    # …and the data plane maps the answer without retrying it (retries=3, backoff=5 s would
    # show as extra attempts). Azure says 403 AuthenticationFailed for a bad signature or an
    # expired SAS (→ Unauthenticated); Azurite says AuthorizationFailure (→ PermissionDenied).
    calls: list[Callable[[], object]] = [
        lambda: adapter.head("auth/x"),
        lambda: adapter.read("auth/x"),
        lambda: next(iter(adapter.list("auth/"))),
    ]
    for call in calls:
        caplog.clear()
        with (
            caplog.at_level(logging.INFO, logger=HTTP_LOG),
            pytest.raises(PermissionDenied) as caught,
        ):
            call()
        assert len(requests_sent(caplog)) == 1
        assert "AuthorizationFailure" in str(caught.value)


def test_unreachable_origin_is_transient_after_the_configured_retries(
    make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}"
    # One retry: ExponentialRetry waits backoff + 2**1 = 2 s before it.
    adapter = make_adapter("account_key", account_url=closed, retries=1, backoff=0)
    with (
        caplog.at_level(logging.INFO, logger=HTTP_LOG),
        pytest.raises(TransientOriginError, match="connection failed"),
    ):
        adapter.head("x")
    assert len(requests_sent(caplog)) == 2


def test_invalid_key_and_connection_string_are_unauthenticated(
    store: Store, make_adapter: MakeAdapter
) -> None:
    bad_key = "not base64 at all!"
    adapter = make_adapter("account_key", environ={**store.environ, "AZ_KEY": bad_key})
    with pytest.raises(Unauthenticated, match="environment variable AZ_KEY") as caught:
        adapter.head("x")
    assert bad_key not in str(caught.value)
    with pytest.raises(Unauthenticated):
        adapter.sign(OriginRequest("GET", "/x"))

    broken = "AccountName=devstoreaccount1;AccountKey"
    adapter = make_adapter("connection_string", environ={**store.environ, "AZ_CONN": broken})
    with pytest.raises(Unauthenticated, match="not Name=value") as caught:
        adapter.head("x")
    assert "AccountKey" not in str(caught.value)


def test_missing_container_is_not_found(make_adapter: MakeAdapter) -> None:
    adapter = make_adapter("account_key", container="no-such-container")
    with pytest.raises(ObjectNotFound, match="ContainerNotFound"):
        adapter.head("x")
    with pytest.raises(ObjectNotFound):
        list(adapter.list())


def test_rotated_secret_is_picked_up(store: Store, make_adapter: MakeAdapter) -> None:
    environ = {**store.environ, "AZ_KEY": WRONG_KEY}
    adapter = make_adapter("account_key", prefix=PREFIX, environ=environ, ttl=0)
    store.container(store.private).upload_blob(PREFIX + "rotate", b"r", overwrite=True)
    with pytest.raises(PermissionDenied):
        adapter.head("rotate")
    environ["AZ_KEY"] = AZURITE_KEY
    assert adapter.read_bytes("rotate") == b"r"


def test_secrets_never_leak(
    store: Store, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    expired = store.sas(expiry=-timedelta(hours=1))
    secrets = {
        "account key": AZURITE_KEY,
        "sas signature": parse_qs(store.environ["AZ_SAS"])["sig"][0],
        "expired sas signature": parse_qs(expired)["sig"][0],
        "connection string": store.server.connection_string,
    }
    store.container(store.private).upload_blob(PREFIX + "leak", b"leak", overwrite=True)
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for mode in ("sas", "account_key", "connection_string"):
            adapter = make_adapter(mode, prefix=PREFIX)
            texts += [repr(adapter), repr(adapter.config)]
            assert adapter.read_bytes("leak", ByteRange.bounded(0, 2)) == b"le"
            assert [i.key for i in adapter.list("leak")] == ["leak"]
            for failing in (lambda a=adapter: a.head("absent"), lambda a=adapter: a.read("a/../b")):
                try:
                    failing()
                except Exception as exc:  # every error's text is checked
                    texts.append("".join(traceback.format_exception(exc)))
        stale = make_adapter("sas", prefix=PREFIX, environ={**store.environ, "AZ_SAS": expired})
        with pytest.raises(PermissionDenied) as caught:
            stale.head("leak")
        texts.append("".join(traceback.format_exception(caught.value)))
    texts += [record.getMessage() for record in caplog.records]
    assert any("sig=REDACTED" in text for text in texts)  # urllib3 logged SAS URLs, masked
    for text in texts:
        for what, value in secrets.items():
            assert value not in text, f"the {what} leaked into: {text[:200]}"


# --- data plane details ---------------------------------------------------------------------


def test_list_is_paginated_and_relative_to_the_prefix(
    store: Store, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture, ns: str
) -> None:
    adapter = make_adapter("account_key", prefix=PREFIX, list_page_size=2)
    container = store.container(store.private)
    for index in range(5):
        container.upload_blob(f"{PREFIX}{ns}item-{index}", b"x" * index, overwrite=True)
    # A hierarchical-namespace directory marker, as ADLS Gen2 accounts list them.
    container.upload_blob(f"{PREFIX}{ns}dir", b"", metadata={"hdi_isfolder": "true"})
    with caplog.at_level(logging.INFO, logger=HTTP_LOG):
        listed = [(info.key, info.size) for info in adapter.list(ns)]
    assert listed == [(f"{ns}item-{index}", index) for index in range(5)]
    assert sum("comp=" in line for line in requests_sent(caplog)) == 3
    info = next(iter(adapter.list(ns + "item-3")))
    assert info.version == adapter.head(ns + "item-3").version  # quoted in both


def test_a_blob_replaced_mid_stream_fails_the_read(
    store: Store, make_adapter: MakeAdapter, ns: str
) -> None:
    adapter = make_adapter("account_key", prefix=PREFIX, chunk_size=64 * 1024)
    container = store.container(store.private)
    data = payload(256 * 1024, "mid-stream")
    container.upload_blob(PREFIX + ns + "big", data, overwrite=True)
    stream = adapter.read(ns + "big")  # not pinned by the caller: the SDK pins later chunks
    assert next(stream) == data[: 64 * 1024]
    container.upload_blob(PREFIX + ns + "big", payload(256 * 1024, "other"), overwrite=True)
    with pytest.raises(PreconditionFailed):
        list(stream)


def test_staged_blocks_carry_no_md5_unless_set_at_commit(
    store: Store, make_adapter: MakeAdapter, ns: str
) -> None:
    # Not an emulator gap: Azure itself stores no Content-MD5 for Put Block List unless the
    # committer sets one, so head() states none and the copy engine must verify otherwise.
    adapter = make_adapter("account_key", prefix=PREFIX)
    parts = [b"a" * 1000, b"b" * 1000]
    whole = b"".join(parts)
    for name, md5 in (("staged", None), ("staged-md5", hashlib.md5(whole).digest())):
        blob = store.container(store.private).get_blob_client(PREFIX + ns + name)
        ids = [f"{index:08d}" for index in range(len(parts))]
        for block_id, part in zip(ids, parts, strict=True):
            blob.stage_block(block_id, part)
        blob.commit_block_list(
            [BlobBlock(block_id) for block_id in ids],
            content_settings=ContentSettings(content_md5=md5) if md5 else None,
        )
        info = adapter.head(ns + name)
        assert info.checksums.md5 == md5
        assert adapter.read_bytes(ns + name) == whole


# --- config and packaging -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_every_auth_mode_works_at_the_edge(mode: str) -> None:
    config = AzureOrigin.model_validate(
        {
            "name": "o",
            "type": "azure",
            "account_url": "https://a.blob.core.windows.net",
            "container": "c-1",
            "auth": AUTH[mode],
        }
    )
    assert config.edge_problem() is None


@pytest.mark.parametrize("name", ["ab", "Upper", "a--b", "-ab", "ab-", "a_b", "$logs"])
def test_invalid_container_names_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        AzureOrigin.model_validate(
            {
                "name": "o",
                "type": "azure",
                "account_url": "https://a.blob.core.windows.net",
                "container": name,
            }
        )


def test_registered_under_its_type() -> None:
    assert adapter_class("azure") is AzureAdapter


def test_edge_face_needs_neither_the_sdk_nor_secrets() -> None:
    code = """
import json, sys
from backorigin.adapters.azure import AzureAdapter
from backorigin.config.origins import AzureOrigin
from backorigin.types import OriginRequest
config = AzureOrigin.model_validate({"name": "o", "type": "azure", "container": "c-1",
    "account_url": "https://a.blob.core.windows.net",
    "auth": {"mode": "sas", "token": {"secret": {"env": "UNSET_VARIABLE"}}}})
adapter = AzureAdapter(config)
adapter.cloudfront_origin()
adapter.origin_uri("k")
public = {**config.model_dump(), "auth": {"mode": "anonymous"}}
AzureAdapter(AzureOrigin.model_validate(public)).sign(OriginRequest("GET", "/k"))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "azure")))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(out) == []
