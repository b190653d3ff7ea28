"""HttpAdapter behaviour specific to HTTP, against the real local origin server."""

from __future__ import annotations

import base64
import hashlib
import socket
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import urllib3.util.retry

from backorigin.adapters.http import (
    MAX_RETRY_AFTER,
    HttpAdapter,
    _Lookups,
    check_redirect,
    parse_checksums,
    version_token,
)
from backorigin.config.origins import HttpOrigin
from backorigin.errors import (
    InvalidRange,
    ObjectNotFound,
    OriginError,
    PermissionDenied,
    PreconditionFailed,
    TransientOriginError,
    Unauthenticated,
)
from backorigin.testing.conformance import payload
from backorigin.testing.http_origin import HttpOriginServer, object_headers
from backorigin.types import ByteRange, GetOptions, OriginRequest
from net_support import LocalAuthority, ScriptedServer, make_authority, twin_servers

MakeAdapter = Callable[..., HttpAdapter]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits urllib3's Retry asks for, recorded instead of slept (keeps tests fast)."""
    asked: list[float] = []
    monkeypatch.setattr(urllib3.util.retry.time, "sleep", asked.append)
    return asked


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- retries ---------------------------------------------------------------------------------


def test_retry_after_is_honoured(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str, sleeps: list[float]
) -> None:
    origin_server.put(ns + "busy", b"finally")
    origin_server.fail(ns + "busy", times=2, status=503, retry_after="2")
    adapter = make_http_adapter(retries=3)
    assert adapter.read_bytes(ns + "busy") == b"finally"
    assert origin_server.request_count(ns + "busy", "GET") == 3
    assert sleeps == [2, 2]


def test_exhausted_retries_raise_transient_with_retry_after(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str, sleeps: list[float]
) -> None:
    origin_server.put(ns + "down", b"x")
    origin_server.fail(ns + "down", times=10, status=503, retry_after="7")
    adapter = make_http_adapter(retries=2)
    with pytest.raises(TransientOriginError) as caught:
        adapter.head(ns + "down")
    assert caught.value.retry_after == 7.0
    assert origin_server.request_count(ns + "down") == 3
    assert sleeps == [7, 7]


def test_retry_after_as_http_date(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    origin_server.put(ns + "later", b"x")
    origin_server.fail(ns + "later", status=429, retry_after=when)
    with pytest.raises(TransientOriginError) as caught:
        make_http_adapter().read(ns + "later")
    assert caught.value.retry_after is not None
    assert 60 < caught.value.retry_after <= 120


def test_a_long_retry_after_ends_the_retries(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str, sleeps: list[float]
) -> None:
    origin_server.put(ns + "maintenance", b"x")
    origin_server.fail(ns + "maintenance", times=5, retry_after=str(int(MAX_RETRY_AFTER) + 1))
    with pytest.raises(TransientOriginError) as caught:
        make_http_adapter(retries=4).read(ns + "maintenance")
    assert caught.value.retry_after == MAX_RETRY_AFTER + 1
    assert origin_server.request_count(ns + "maintenance") == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, OriginError),
        (401, Unauthenticated),
        (403, PermissionDenied),
        (404, ObjectNotFound),
        (410, ObjectNotFound),
        (412, PreconditionFailed),
        (416, InvalidRange),
        (429, TransientOriginError),
        (500, TransientOriginError),
        (502, TransientOriginError),
        (503, TransientOriginError),
        (504, TransientOriginError),
        (505, TransientOriginError),
    ],
)
def test_statuses_map_to_the_error_taxonomy(
    origin_server: HttpOriginServer,
    make_http_adapter: MakeAdapter,
    ns: str,
    status: int,
    error: type[Exception],
) -> None:
    origin_server.put(ns + "object", b"x")
    origin_server.fail(ns + "object", times=2, status=status)
    adapter = make_http_adapter()
    with pytest.raises(error) as by_head:
        adapter.head(ns + "object")
    with pytest.raises(error) as by_read:
        adapter.read(ns + "object")
    assert type(by_head.value) is error
    assert type(by_read.value) is error
    assert str(status) in str(by_read.value)


def test_read_timeout_on_a_stalled_server(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(ns + "slow", b"x")
    origin_server.stall(ns + "slow", 1.5)
    with pytest.raises(TransientOriginError, match="read timed out"):
        make_http_adapter(read_timeout=0.2).read(ns + "slow")


def test_connection_refused_is_transient(make_http_adapter: MakeAdapter) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = make_http_adapter(base_url=f"http://127.0.0.1:{port}/", connect_timeout=0.5)
    with pytest.raises(TransientOriginError, match="cannot connect"):
        adapter.head("anything")


def test_dropped_connection_mid_body_is_transient(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    data = payload(600_000, "dropped")
    origin_server.put(ns + "dropped", data)
    origin_server.put(ns + "fine", b"fine")
    origin_server.drop_after(ns + "dropped", 300_000)
    adapter = make_http_adapter()
    stream = adapter.read(ns + "dropped")
    received = bytearray()

    def consume() -> None:
        for chunk in stream:
            received.extend(chunk)

    with pytest.raises(TransientOriginError, match="connection broken"):
        consume()
    assert data.startswith(received)
    assert len(received) < len(data)
    assert adapter.read_bytes(ns + "fine") == b"fine"


# --- ranges and streaming ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("byte_range", "expected"),
    [
        (ByteRange.bounded(100, 200), slice(100, 200)),
        (ByteRange.bounded(0, 1), slice(0, 1)),
        (ByteRange.from_offset(300_000), slice(300_000, None)),
        (ByteRange.suffix(1000), slice(-1000, None)),
        (ByteRange.bounded(299_990, 400_000), slice(299_990, 400_000)),
    ],
    ids=str,
)
def test_server_ignoring_range_still_yields_the_requested_bytes(
    origin_server: HttpOriginServer,
    make_http_adapter: MakeAdapter,
    ns: str,
    byte_range: ByteRange,
    expected: slice,
) -> None:
    data = payload(700_000, "no-ranges")
    origin_server.put(ns + "whole", data)
    origin_server.ignore_range(ns + "whole")
    adapter = make_http_adapter()
    assert adapter.read_bytes(ns + "whole", range=byte_range) == data[expected]
    # The connection was closed (not reused with unread bytes): the next read is clean.
    assert adapter.read_bytes(ns + "whole") == data


def test_server_ignoring_range_past_eof_is_invalid_range(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(ns + "whole", b"0123456789")
    origin_server.ignore_range(ns + "whole")
    with pytest.raises(InvalidRange):
        make_http_adapter().read(ns + "whole", range=ByteRange.from_offset(10))


def test_parallel_range_reads_share_one_adapter(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    data = payload(1_000_000, "parallel")
    origin_server.put(ns + "big", data)
    adapter = make_http_adapter()
    parts = [ByteRange.bounded(start, start + 62_500) for start in range(0, len(data), 62_500)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        pieces = list(pool.map(lambda r: adapter.read_bytes(ns + "big", range=r), parts))
    assert b"".join(pieces) == data


def test_bytes_pass_through_raw_without_negotiation(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    compressed = zlib.compress(b"text " * 1000)
    origin_server.put(ns + "deflated", compressed, headers={"Content-Encoding": "deflate"})
    assert make_http_adapter().read_bytes(ns + "deflated") == compressed
    sent = origin_server.requests(ns + "deflated")[-1].headers
    assert "accept-encoding" not in sent
    assert sent["user-agent"].startswith("backorigin/")


# --- version pinning ----------------------------------------------------------------------------


def test_strong_etag_pins_with_if_match(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(ns + "obj", b"version one")
    adapter = make_http_adapter()
    info = adapter.head(ns + "obj")
    assert info.etag is not None
    assert info.version == info.etag
    assert adapter.read_bytes(ns + "obj", version=info) == b"version one"
    assert origin_server.requests(ns + "obj")[-1].headers["if-match"] == info.etag


def test_weak_etag_falls_back_to_last_modified_and_size(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(ns + "obj", b"version one")
    origin_server.weak_etag(ns + "obj")
    adapter = make_http_adapter()
    info = adapter.head(ns + "obj")
    assert info.etag is not None
    assert info.etag.startswith('W/"')
    assert info.last_modified is not None
    lm = format_datetime(info.last_modified, usegmt=True)
    assert info.version == lm
    assert adapter.read_bytes(ns + "obj", version=info) == b"version one"
    sent = origin_server.requests(ns + "obj")[-1].headers
    assert sent["if-unmodified-since"] == lm
    assert "if-match" not in sent
    origin_server.replace(ns + "obj", b"version two")
    with pytest.raises(PreconditionFailed):
        adapter.get(ns + "obj", GetOptions(pin=info))


def test_size_change_is_caught_even_if_the_server_ignores_preconditions(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(ns + "obj", b"short")
    origin_server.hide_headers(ns + "obj", "ETag")
    adapter = make_http_adapter()
    info = adapter.head(ns + "obj")
    assert info.version is not None
    # A pin with the same Last-Modified but another size: only the size check can tell.
    with pytest.raises(PreconditionFailed, match="size"):
        adapter.get(ns + "obj", GetOptions(pin=replace(info, size=6)))


def test_no_validators_means_no_version(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(ns + "obj", b"data")
    origin_server.hide_headers(ns + "obj", "ETag", "Last-Modified")
    info = make_http_adapter().head(ns + "obj")
    assert info.etag is None
    assert info.last_modified is None
    assert info.version is None


def test_version_token() -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert version_token('"abc"', date) == '"abc"'
    assert version_token('W/"abc"', date) == date
    assert version_token(None, date) == date
    assert version_token('W/"abc"', None) is None
    assert version_token(None, "not a date") is None


# --- HEAD fallback and metadata ---------------------------------------------------------------


@pytest.mark.parametrize("status", [405, 501])
def test_head_falls_back_to_a_one_byte_get(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str, status: int
) -> None:
    data = payload(5000, "no-head")
    origin_server.put(ns + "obj", data, headers=object_headers(data, content_type="image/png"))
    origin_server.refuse_head(ns + "obj", status=status)
    info = make_http_adapter().head(ns + "obj")
    assert info.size == 5000
    assert info.content_type == "image/png"
    assert info.etag is not None
    assert info.version == info.etag
    assert info.checksums.sha256 == hashlib.sha256(data).digest()
    methods = [r.method for r in origin_server.requests(ns + "obj")]
    assert methods == ["HEAD", "GET"]
    assert origin_server.requests(ns + "obj")[-1].headers["range"] == "bytes=0-0"


def test_head_fallback_on_an_empty_object(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(ns + "empty", b"")
    origin_server.refuse_head(ns + "empty")
    assert make_http_adapter().head(ns + "empty").size == 0


def test_head_fallback_missing_object(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.refuse_head(ns + "missing")
    with pytest.raises(ObjectNotFound):
        make_http_adapter().head(ns + "missing")


def test_user_metadata_needs_the_configured_prefix(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(
        ns + "obj", b"x", headers={"X-Amz-Meta-Owner": "Bob", "x-amz-meta-ID": "7", "X-Other": "1"}
    )
    with_prefix = make_http_adapter(metadata_header_prefix="X-AMZ-META-").head(ns + "obj")
    assert dict(with_prefix.metadata) == {"owner": "Bob", "id": "7"}
    assert dict(make_http_adapter().head(ns + "obj").metadata) == {}


def test_digest_headers_from_the_server(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    data = b"digest me"
    md5, sha1, sha256 = (hashlib.new(n, data).digest() for n in ("md5", "sha1", "sha256"))
    origin_server.put(
        ns + "repr",
        data,
        headers={"Repr-Digest": f"sha-256=:{b64(sha256)}:, md5=:{b64(md5)}:"},
    )
    origin_server.put(
        ns + "legacy",
        data,
        headers={"Digest": f"MD5={b64(md5)},SHA={b64(sha1)}, SHA-256={b64(sha256)}"},
    )
    origin_server.put(ns + "md5", data, headers={"Content-MD5": b64(md5)})
    origin_server.put(
        ns + "garbage",
        data,
        headers={
            "Repr-Digest": "sha-256=:!!not base64!!:, md5=abc, =:::, sha-512",
            "Digest": "MD5=zzz,nonsense,SHA-256=" + b64(b"too short"),
            "Content-MD5": "bm90IGFuIG1kNQ==",
        },
    )
    adapter = make_http_adapter()
    assert adapter.head(ns + "repr").checksums.known() == {"md5": md5, "sha256": sha256}
    assert adapter.head(ns + "legacy").checksums.known() == {
        "md5": md5,
        "sha1": sha1,
        "sha256": sha256,
    }
    assert adapter.head(ns + "md5").checksums.known() == {"md5": md5}
    assert not adapter.head(ns + "garbage").checksums


def test_parse_checksums() -> None:
    md5 = hashlib.md5(b"x").digest()
    sha256 = hashlib.sha256(b"x").digest()
    crc = bytes.fromhex("deadbeef")
    headers = {
        "repr-digest": f"SHA-256=:{b64(sha256)}:;param=1, unknown=:{b64(b'zz')}:",
        "digest": f"crc32c=DEADBEEF, md5={b64(hashlib.md5(b'other').digest())}",
        "content-md5": b64(md5),
    }
    parsed = parse_checksums(headers)
    assert parsed.sha256 == sha256
    assert parsed.crc32c == crc
    # Repr-Digest and Digest outrank Content-MD5; here only Digest states md5.
    assert parsed.md5 == hashlib.md5(b"other").digest()
    assert parse_checksums({"content-md5": b64(md5)}).md5 == md5
    assert parse_checksums({"content-md5": b64(md5)}, whole_body=False).md5 is None
    assert parse_checksums({"digest": f"crc32c={b64(crc)}"}).crc32c == crc
    assert not parse_checksums({})


# --- redirects ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_within_the_same_host_is_followed(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str, status: int
) -> None:
    origin_server.put(ns + "new/place", b"moved here")
    origin_server.redirect(ns + "old", origin_server.url + ns + "new/place", status=status)
    adapter = make_http_adapter()
    assert adapter.head(ns + "old").size == 10
    assert adapter.read_bytes(ns + "old", range=ByteRange.bounded(0, 5)) == b"moved"


def test_relative_redirects_resolve_against_the_current_url(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(ns + "dir/target", b"relative")
    origin_server.redirect(ns + "dir/hop1", "hop2")
    origin_server.redirect(ns + "dir/hop2", f"/{ns}dir/target")
    assert make_http_adapter().read_bytes(ns + "dir/hop1") == b"relative"


def test_redirect_to_another_host_needs_redirect_hosts(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    other = origin_server.url.replace("127.0.0.1", "localhost") + ns + "target"
    origin_server.put(ns + "target", b"elsewhere")
    origin_server.redirect(ns + "src", other)
    with pytest.raises(PermissionDenied, match="redirect_hosts"):
        make_http_adapter().read(ns + "src")
    assert origin_server.request_count(ns + "target") == 0
    allowed = make_http_adapter(redirect_hosts=["localhost"])
    assert allowed.read_bytes(ns + "src") == b"elsewhere"


def test_credentials_are_not_forwarded_to_another_host(
    origin_server: HttpOriginServer,
    make_http_adapter: MakeAdapter,
    ns: str,
    origin_secrets: dict[str, str],
) -> None:
    other = origin_server.url.replace("127.0.0.1", "localhost") + ns + "target"
    origin_server.put(ns + "target", b"elsewhere")
    origin_server.redirect(ns + "src", other)
    adapter = make_http_adapter(
        redirect_hosts=["localhost"],
        auth={"mode": "bearer", "token": {"secret": {"env": "ORIGIN_TOKEN"}}},
    )
    assert adapter.read_bytes(ns + "src") == b"elsewhere"
    expected = f"Bearer {origin_secrets['ORIGIN_TOKEN']}"
    assert origin_server.requests(ns + "src")[-1].headers["authorization"] == expected
    assert "authorization" not in origin_server.requests(ns + "target")[-1].headers


def test_redirect_to_the_metadata_service_is_refused_without_connecting(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.redirect(ns + "evil", "http://169.254.169.254/latest/meta-data/iam/")
    # Even listing the address as a redirect host does not open the door.
    adapter = make_http_adapter(redirect_hosts=["169.254.169.254"], connect_timeout=0.2)
    with pytest.raises(PermissionDenied, match="link-local"):
        adapter.head(ns + "evil")
    hosts = {host for _, host, _, _ in adapter._pool.pool_keys()}
    assert hosts == {"127.0.0.1"}


def test_every_redirect_hop_is_judged_not_only_the_first(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    """A same-host hop first, then one to a host nobody allowed: the second is refused too."""
    with ScriptedServer("127.0.0.2") as decoy:
        decoy.answer("/x", body=b"stolen")
        origin_server.redirect(ns + "src", origin_server.url + ns + "mid")
        origin_server.redirect(ns + "mid", decoy.url() + "/x")
        with pytest.raises(PermissionDenied, match="redirect_hosts"):
            make_http_adapter().read(ns + "src")
        # Listed, but a name that resolves to the metadata service, two hops in.
        origin_server.redirect(ns + "mid", f"http://cdn.test:{decoy.port}/x")
        listed = make_http_adapter(
            redirect_hosts=["cdn.test"],
            resolver=lambda host: ["169.254.169.254"],
            connect_timeout=0.2,
        )
        with pytest.raises(PermissionDenied, match="link-local"):
            listed.read(ns + "src")
        assert decoy.requests() == []
    assert origin_server.request_count(ns + "mid") == 2


class ChangingResolver:
    """A DNS that gives one answer to the first lookup of a name and another after it."""

    def __init__(self, first: dict[str, list[str]], later: dict[str, list[str]]) -> None:
        self.first = first
        self.later = later
        self.asked: list[str] = []

    def __call__(self, host: str) -> list[str]:
        answer = self.later if host in self.asked else self.first
        self.asked.append(host)
        if host not in answer:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answer[host]


@pytest.fixture
def twins() -> Iterator[tuple[ScriptedServer, ScriptedServer]]:
    """(approved, decoy): scripted servers on 127.0.0.2 and 127.0.0.1, on the same port.

    ``localhost`` is 127.0.0.1 to the system resolver, so a connection that looked the name
    up again by itself would land on the decoy."""
    decoy, approved = twin_servers("127.0.0.1", "127.0.0.2")
    with approved, decoy:
        yield approved, decoy


def test_a_redirect_connects_to_the_address_that_was_checked(
    origin_server: HttpOriginServer,
    make_http_adapter: MakeAdapter,
    ns: str,
    twins: tuple[ScriptedServer, ScriptedServer],
) -> None:
    approved, decoy = twins
    approved.answer("/x", body=b"checked address")
    decoy.answer("/x", body=b"rebound")
    origin_server.redirect(ns + "src", f"http://localhost:{approved.port}/x")
    # Checked: 127.0.0.2. Any later lookup: the metadata service (or, for the system
    # resolver, 127.0.0.1: the decoy).
    dns = ChangingResolver({"localhost": ["127.0.0.2"]}, {"localhost": ["169.254.169.254"]})
    adapter = make_http_adapter(redirect_hosts=["localhost"], resolver=dns, connect_timeout=0.5)
    assert adapter.read_bytes(ns + "src") == b"checked address"
    assert dns.asked == ["localhost"]  # one lookup, and the connection used its answer
    assert decoy.requests() == []
    assert approved.requests("/x")[0].headers["host"] == f"localhost:{approved.port}"


def test_the_origin_itself_is_reached_at_the_address_looked_up(
    make_http_adapter: MakeAdapter, twins: tuple[ScriptedServer, ScriptedServer]
) -> None:
    approved, decoy = twins
    approved.answer("/k", body=b"looked up", ETag='"1"')
    dns = ChangingResolver({"localhost": ["127.0.0.2"]}, {"localhost": ["127.0.0.1"]})
    adapter = make_http_adapter(base_url=f"http://localhost:{approved.port}/", resolver=dns)
    assert adapter.read_bytes("k") == b"looked up"
    assert dns.asked == ["localhost"]
    assert decoy.requests() == []


def test_the_next_looked_up_address_is_tried_when_one_refuses(
    make_http_adapter: MakeAdapter, twins: tuple[ScriptedServer, ScriptedServer]
) -> None:
    approved, decoy = twins
    approved.answer("/k", body=b"second address")
    with socket.socket() as probe:  # a port nobody listens on, on a third loopback address
        probe.bind(("127.0.0.3", approved.port))
    adapter = make_http_adapter(
        base_url=f"http://localhost:{approved.port}/",
        resolver=lambda host: ["127.0.0.3", "127.0.0.2"],
    )
    assert adapter.read_bytes("k") == b"second address"
    assert decoy.requests() == []
    nowhere = make_http_adapter(
        base_url=f"http://localhost:{approved.port}/", resolver=lambda host: ["127.0.0.3"]
    )
    with pytest.raises(TransientOriginError, match="cannot connect"):
        nowhere.read("k")
    assert decoy.requests() == []


def test_dns_answers_are_reused_for_a_while_and_failures_never() -> None:
    """Pools are per address set: a DNS that rotates its answers must not cost a connection
    per request, so answers are kept for a TTL (on the adapter's monotonic clock)."""
    now = [0.0]
    dns = ChangingResolver({"cdn.test": ["192.0.2.1"]}, {"cdn.test": ["192.0.2.2"]})
    lookups = _Lookups(dns, ttl=30.0, clock=lambda: now[0])
    assert lookups("cdn.test") == ["192.0.2.1"]
    now[0] = 29.9
    assert lookups("cdn.test") == ["192.0.2.1"]
    now[0] = 30.0
    assert lookups("cdn.test") == ["192.0.2.2"]
    assert dns.asked == ["cdn.test", "cdn.test"]
    for _ in range(2):
        with pytest.raises(socket.gaierror):
            lookups("nowhere.test")
    assert dns.asked.count("nowhere.test") == 2


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> LocalAuthority:
    """A test CA and a certificate for ``localhost`` and 127.0.0.1 (not for 127.0.0.2)."""
    return make_authority(tmp_path_factory.mktemp("tls"), ["localhost"], ["127.0.0.1"])


@pytest.fixture
def trust_authority(authority: LocalAuthority, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the test CA the one OpenSSL's default verify paths (and so urllib3) trust."""
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca_file))


@pytest.mark.usefixtures("trust_authority")
def test_tls_names_the_host_while_connecting_to_the_pinned_address(
    make_http_adapter: MakeAdapter, authority: LocalAuthority
) -> None:
    """127.0.0.2 is not in the certificate: it verifies only if SNI and the hostname check
    use the name, as they must; a name the certificate does not carry still fails."""
    with ScriptedServer("127.0.0.2", tls=authority) as server:
        server.answer("/k", body=b"over tls")
        adapter = make_http_adapter(
            base_url=f"https://localhost:{server.port}/", resolver=lambda host: ["127.0.0.2"]
        )
        assert adapter.read_bytes("k") == b"over tls"
        assert server.requests("/k")[0].headers["host"] == f"localhost:{server.port}"
        wrong = make_http_adapter(
            base_url=f"https://not-in-the-cert.test:{server.port}/",
            resolver=lambda host: ["127.0.0.2"],
        )
        with pytest.raises(OriginError, match="certificate verification failed"):
            wrong.read("k")


@pytest.mark.usefixtures("trust_authority")
@pytest.mark.parametrize("hop", ["downgrade", "other-host", "same-origin"])
@pytest.mark.parametrize("mode", ["basic", "bearer", "headers"])
def test_credentials_follow_a_redirect_only_to_the_same_https_host(
    make_http_adapter: MakeAdapter,
    authority: LocalAuthority,
    origin_secrets: dict[str, str],
    mode: str,
    hop: str,
) -> None:
    with (
        ScriptedServer("127.0.0.1", tls=authority) as secure,
        ScriptedServer("127.0.0.1") as plain,
    ):
        targets = {
            "downgrade": (plain, f"http://localhost:{plain.port}/target"),
            "other-host": (secure, f"https://127.0.0.1:{secure.port}/target"),
            "same-origin": (secure, f"https://localhost:{secure.port}/target"),
        }
        server, location = targets[hop]
        secure.redirect("/src", location)
        server.answer("/target", body=b"moved")
        adapter = make_http_adapter(
            base_url=f"https://localhost:{secure.port}/",
            auth=AUTH_CONFIGS[mode],
            redirect_hosts=["127.0.0.1"],
            resolver=lambda host: ["127.0.0.1"],
        )
        assert adapter.read_bytes("src") == b"moved"
        expected = expected_auth(mode, origin_secrets)
        sent = secure.requests("/src")[0].headers
        assert {name: sent.get(name) for name in expected} == expected
        received = server.requests("/target")[0].headers
        if hop == "same-origin":
            assert {name: received.get(name) for name in expected} == expected
        else:
            assert not set(expected) & set(received), f"credentials sent on a {hop} redirect"


def test_redirect_loops_stop_at_max_redirects(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.redirect(ns + "loop", origin_server.url + ns + "loop")
    with pytest.raises(OriginError, match="more than 3 redirect"):
        make_http_adapter(max_redirects=3).read(ns + "loop")
    assert origin_server.request_count(ns + "loop") == 4


def test_redirect_without_location(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(ns + "obj", b"x")
    origin_server.fail(ns + "obj", status=302)
    with pytest.raises(OriginError, match="without a Location"):
        make_http_adapter().read(ns + "obj")


DNS = {
    "old.example.com": ["93.184.216.34"],
    "cdn.example.net": ["151.101.1.1", "2a04:4e42::1"],
    "sneaky.example.com": ["127.0.0.1"],
    "mixed.example.com": ["93.184.216.34", "10.1.2.3"],
    "intranet.corp": ["10.0.0.7"],
    "other.intranet.corp": ["10.0.0.8"],
    "metadata.corp": ["169.254.169.254"],
    "localhost": ["127.0.0.1", "::1"],
}


def resolver(host: str) -> list[str]:
    if host not in DNS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return DNS[host]


@pytest.mark.parametrize(
    ("base", "target", "allowed"),
    [
        ("https://old.example.com/", "https://old.example.com/elsewhere/x", ()),
        ("https://old.example.com/", "http://old.example.com/x", ()),
        ("https://old.example.com/", "https://cdn.example.net/x", ("cdn.example.net",)),
        ("https://OLD.example.com./", "https://old.EXAMPLE.com/x", ()),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:9090/x", ()),
        ("http://localhost:8080/", "http://127.0.0.1/x", ("127.0.0.1",)),
        ("http://localhost/", "http://[::1]/x", ("::1",)),
        ("http://intranet.corp/", "http://other.intranet.corp/x", ("other.intranet.corp",)),
        ("http://intranet.corp/", "https://cdn.example.net/x", ("cdn.example.net",)),
        ("http://metadata.corp/", "http://169.254.169.254/x", ("169.254.169.254",)),
    ],
)
def test_check_redirect_allows(base: str, target: str, allowed: tuple[str, ...]) -> None:
    check_redirect(base, target, allowed, resolve=resolver)


@pytest.mark.parametrize(
    ("base", "target", "allowed", "why"),
    [
        ("https://old.example.com/", "https://cdn.example.net/x", (), "redirect_hosts"),
        ("https://old.example.com/", "ftp://old.example.com/x", (), "http and https"),
        ("https://old.example.com/", "https://u:p@old.example.com/", (), "credentials"),
        ("https://old.example.com/", "http://127.0.0.1/", ("127.0.0.1",), "loopback"),
        (
            "https://old.example.com/",
            "http://sneaky.example.com/",
            ("sneaky.example.com",),
            "loopback",
        ),
        ("https://old.example.com/", "http://10.1.2.3/", ("10.1.2.3",), "private"),
        (
            "https://old.example.com/",
            "http://mixed.example.com/",
            ("mixed.example.com",),
            "private",
        ),
        ("https://old.example.com/", "http://169.254.169.254/", ("169.254.169.254",), "link-local"),
        ("https://old.example.com/", "http://[fe80::1]/", ("fe80::1",), "link-local"),
        (
            "https://old.example.com/",
            "http://[::ffff:169.254.169.254]/",
            ("::ffff:169.254.169.254",),
            "link-local",
        ),
        ("https://old.example.com/", "http://[fd00::1]/", ("fd00::1",), "private"),
        (
            "https://old.example.com/",
            "http://[64:ff9b::a9fe:a9fe]/",
            ("64:ff9b::a9fe:a9fe",),
            "link-local",
        ),
        ("https://old.example.com/", "http://[2002:7f00:1::]/", ("2002:7f00:1::",), "loopback"),
        ("http://127.0.0.1/", "http://169.254.169.254/", ("169.254.169.254",), "link-local"),
        ("http://127.0.0.1/", "http://metadata.corp/", ("metadata.corp",), "link-local"),
        ("http://127.0.0.1/", "http://10.0.0.7/", ("10.0.0.7",), "private"),
        ("http://intranet.corp/", "http://127.0.0.1/", ("127.0.0.1",), "loopback"),
        ("http://127.0.0.1/", "http://0.0.0.0/", ("0.0.0.0",), "reserved"),
        ("https://old.example.com/", "http://nowhere.invalid/", ("nowhere.invalid",), "resolve"),
    ],
)
def test_check_redirect_refuses(base: str, target: str, allowed: tuple[str, ...], why: str) -> None:
    with pytest.raises(PermissionDenied, match=why):
        check_redirect(base, target, allowed, resolve=resolver)


# --- auth ----------------------------------------------------------------------------------------

AUTH_CONFIGS: dict[str, dict[str, Any]] = {
    "basic": {
        "mode": "basic",
        "username": "alice",
        "password": {"secret": {"env": "ORIGIN_PASSWORD"}},
    },
    "bearer": {"mode": "bearer", "token": {"secret": {"env": "ORIGIN_TOKEN"}}},
    "headers": {
        "mode": "headers",
        "headers": {"X-Api-Key": {"secret": {"env": "ORIGIN_API_KEY"}}},
    },
}


def expected_auth(mode: str, secrets: dict[str, str]) -> dict[str, str]:
    """The headers (lower-case names) each auth mode must send."""
    if mode == "basic":
        pair = b64(f"alice:{secrets['ORIGIN_PASSWORD']}".encode())
        return {"authorization": f"Basic {pair}"}
    if mode == "bearer":
        return {"authorization": f"Bearer {secrets['ORIGIN_TOKEN']}"}
    return {"x-api-key": secrets["ORIGIN_API_KEY"]}


@pytest.mark.parametrize("mode", AUTH_CONFIGS)
def test_auth_headers_are_sent_and_secrets_never_shown(
    origin_server: HttpOriginServer,
    make_http_adapter: MakeAdapter,
    ns: str,
    origin_secrets: dict[str, str],
    mode: str,
) -> None:
    expected = expected_auth(mode, origin_secrets)
    origin_server.put(ns + "private", b"members only")
    origin_server.require_headers(ns + "private", expected)
    adapter = make_http_adapter(auth=AUTH_CONFIGS[mode])
    assert adapter.head(ns + "private").size == 12
    assert adapter.read_bytes(ns + "private") == b"members only"
    for request in origin_server.requests(ns + "private"):
        for name, value in expected.items():
            assert request.headers[name] == value
    wrong = make_http_adapter(
        auth=AUTH_CONFIGS[mode], environ=dict.fromkeys(origin_secrets, "wrong-secret")
    )
    with pytest.raises(Unauthenticated) as caught:
        wrong.read(ns + "private")
    shown = [repr(adapter), str(adapter), repr(adapter.config), str(caught.value)]
    shown.append(repr(caught.value))
    for secret in origin_secrets.values():
        assert not any(secret in text for text in shown)


@pytest.mark.parametrize("mode", AUTH_CONFIGS)
def test_sign_adds_the_auth_headers(
    make_http_adapter: MakeAdapter, origin_secrets: dict[str, str], mode: str
) -> None:
    request = OriginRequest("GET", "/a%20b", headers={"host": "old.example.com"})
    signed = make_http_adapter(auth=AUTH_CONFIGS[mode]).sign(request)
    expected = expected_auth(mode, origin_secrets)
    assert dict(signed.headers) == {"host": "old.example.com", **expected}
    assert signed.uri == request.uri


def test_sign_without_auth_changes_nothing(make_http_adapter: MakeAdapter) -> None:
    request = OriginRequest("GET", "/key")
    assert make_http_adapter().sign(request) == request


# --- edge plane ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "domain", "path", "protocol", "port"),
    [
        ("https://old.example.com/static/", "old.example.com", "/static", "https", 443),
        ("https://old.example.com/", "old.example.com", "", "https", 443),
        ("http://origin.example.com:8080", "origin.example.com", "", "http", 8080),
        ("http://origin.example.com/a/b", "origin.example.com", "/a/b", "http", 80),
        ("https://origin.example.com:8443/x/", "origin.example.com", "/x", "https", 8443),
    ],
)
def test_cloudfront_origin(base_url: str, domain: str, path: str, protocol: str, port: int) -> None:
    config = HttpOrigin(name="legacy", type="http", base_url=base_url)
    with HttpAdapter(config) as adapter:
        spec = adapter.cloudfront_origin()
    assert (spec.domain, spec.path, spec.protocol, spec.port) == (domain, path, protocol, port)


def test_keys_are_encoded_below_the_base_path(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(f"{ns}base/pre/a b+c%2Fd", b"found")
    adapter = make_http_adapter(base_url=origin_server.url + ns + "base", prefix="pre/")
    assert adapter.origin_uri("a b+c%2Fd") == "/pre/a%20b%2Bc%252Fd"
    assert adapter.read_bytes("a b+c%2Fd") == b"found"
