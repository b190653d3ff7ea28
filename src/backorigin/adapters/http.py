"""The HTTP(S) origin adapter: any web server, read with urllib3.

Objects live at ``base_url + prefix + key`` (the key percent-encoded, see
:meth:`OriginAdapter.origin_uri`). The adapter

* pools connections in one thread-safe :class:`urllib3.PoolManager` per adapter;
* retries only through urllib3's own :class:`~urllib3.util.Retry` (5xx, 429, timeouts, resets;
  ``Retry-After`` honoured), never in a loop of its own;
* pins reads to a version: a strong ETag (``If-Match``), else Last-Modified
  (``If-Unmodified-Since``; the shared read path checks the size too);
* passes bytes through raw: ``Content-Encoding`` is never decoded;
* follows redirects itself, and only to targets :func:`check_redirect` allows (SSRF
  protection: no hop to cloud metadata addresses or private networks);
* takes a host's addresses once per hop (from a lookup it keeps for :data:`_DNS_TTL` seconds)
  and connects to exactly those (for a redirect, the ones :func:`check_redirect` approved),
  while ``Host``, TLS SNI and the certificate check stay on the name: a DNS answer that changes
  between the check and the connection (DNS rebinding) cannot move a connection elsewhere.

Status codes are mapped to :mod:`backorigin.errors` by the shared HTTP table
(:func:`backorigin.adapters.read.status_error`) and urllib3's exceptions in
:func:`_transport_error`; nowhere else. Resuming a dropped body, the pin and window checks
are the shared read path's (:mod:`backorigin.adapters.read`); this adapter sends one GET.
"""

from __future__ import annotations

__all__ = [
    "HttpAdapter",
    "Resolver",
    "check_redirect",
    "parse_checksums",
    "resolve_host",
    "version_token",
]

import base64
import binascii
import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC
from email.utils import format_datetime
from http.client import HTTPException
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urljoin, urlsplit, urlunsplit

import urllib3
from urllib3 import HTTPConnectionPool, HTTPHeaderDict, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util import SKIP_HEADER, Retry, Timeout, parse_url
from urllib3.util.connection import create_connection

from backorigin import __version__
from backorigin.adapters.base import OriginAdapter, secret_reference
from backorigin.adapters.headers import http_date, retry_after_seconds
from backorigin.adapters.read import RawGet, content_range, status_error
from backorigin.config.origins import (
    HttpBasicAuth,
    HttpBearerAuth,
    HttpHeadersAuth,
    HttpOrigin,
)
from backorigin.config.secrets import SecretResolver
from backorigin.errors import (
    OriginError,
    PermissionDenied,
    TransientOriginError,
)
from backorigin.types import Checksums, GetOptions, ObjectInfo, OriginRequest, OriginSpec

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
CHUNK_SIZE = 256 * 1024
"""Bytes per chunk of a streamed read."""
MAX_RETRY_AFTER = 60.0
"""A ``Retry-After`` longer than this ends the retries instead of sleeping through it: the
error carries ``retry_after`` and the caller (the queue) waits, not a Lambda's clock."""
# Every request: who we are, and no Accept-Encoding at all (http.client would send
# "identity"): the stored representation is what we want, never a negotiated one.
_BASE_HEADERS = {"User-Agent": f"backorigin/{__version__}", "Accept-Encoding": SKIP_HEADER}
_DRAIN_LIMIT = 64 * 1024  # unread bodies up to this size are read to keep the connection
_POOL_SIZE = 32  # connections kept per host; the copy engine reads ranges in parallel
_POOLS_KEPT = 16  # (scheme, host, port, addresses) pools kept per adapter, least recent dropped
_DNS_TTL = 30.0
"""Seconds a host's addresses are reused. Connections are pooled per address set, so DNS that
rotates its answers would otherwise cost a new connection (and TLS handshake) per request."""

Resolver = Callable[[str], Iterable[str]]
"""Host name → the IP addresses it resolves to (as strings), most preferred first."""


# --- redirect policy (SSRF protection) ------------------------------------------------------

# Address categories a redirect is judged by. "public" is always fine; "reserved"
# (unspecified, multicast, documentation, …) never is; the others only when the base URL's
# own host is in the same category (a loopback test origin may redirect to loopback).
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CATEGORY_NOTES = {
    "loopback": "loopback",
    "link-local": "link-local, where cloud metadata services live",
    "private": "a private network",
    "reserved": "a reserved or special-purpose range",
}


def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to, in ``getaddrinfo``'s order of preference, without
    duplicates (literal IPs are returned as they are)."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _Lookups:
    """A resolver whose answers are reused for ``ttl`` seconds (failures are not kept).

    What a check judged and what a connection uses are the same answer either way: the
    adapter connects to the addresses the check returned, never to a second lookup.
    """

    _KEPT = 256  # hosts remembered; an adapter meets its base host and a few redirect hosts

    def __init__(
        self,
        resolve: Resolver,
        *,
        ttl: float = _DNS_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve
        self._ttl = ttl
        self._clock = clock
        self._answers: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def __call__(self, host: str) -> list[str]:
        now = self._clock()
        with self._lock:
            kept = self._answers.get(host)
        if kept is not None and now < kept[0]:
            return list(kept[1])
        answer = tuple(self._resolve(host))
        with self._lock:
            if len(self._answers) >= self._KEPT:
                self._answers.clear()
            self._answers[host] = (now + self._ttl, answer)
        return list(answer)


def _category(address: str) -> str:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that reach an IPv4 address are judged by that address.
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if any(ip in net for net in _PRIVATE_NETWORKS):
        return "private"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved or not ip.is_global:
        return "reserved"
    return "public"


def _addresses(host: str, resolve: Resolver) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return list(resolve(host))


def _normal_host(host: str | None) -> str:
    return (host or "").lower().rstrip(".")


def check_redirect(
    base_url: str,
    target_url: str,
    allowed_hosts: Iterable[str] = (),
    *,
    resolve: Resolver = resolve_host,
) -> list[str]:
    """Refuse a redirect an origin must not be allowed to send us to; else its addresses.

    A target is allowed when its scheme is http or https, it carries no credentials, its host
    is the base URL's host or one of ``allowed_hosts``, and every address the host resolves
    to is public or in the same category (loopback, link-local, private) as an address of
    the base URL's host. So a public origin can never send the fetcher to ``127.0.0.1``, a
    private network or the cloud metadata service at ``169.254.169.254``.

    Args:
        base_url: The origin's configured base URL.
        target_url: The absolute URL the redirect points to.
        allowed_hosts: Other host names redirects may lead to.
        resolve: Host name → addresses; :func:`resolve_host` (DNS) by default.

    Returns:
        The target host's addresses, every one of them approved. Connect to these and no
        others: a second lookup may answer differently (DNS rebinding).

    Raises:
        PermissionDenied: the redirect is refused; the message says why.
    """
    target = urlsplit(target_url)
    host = _normal_host(target.hostname)
    shown = f"{target.scheme}://{target.netloc}"

    def refuse(why: str) -> PermissionDenied:
        return PermissionDenied(f"redirect to {shown} refused: {why}")

    if target.scheme not in ("http", "https"):
        raise refuse("only http and https redirects are followed")
    if target.username is not None or target.password is not None:
        raise refuse("the target URL carries credentials")
    base_host = _normal_host(urlsplit(base_url).hostname)
    allowed = {base_host, *(_normal_host(h) for h in allowed_hosts)}
    if host not in allowed:
        raise refuse(f"host {host!r} is neither the base URL's host nor listed in redirect_hosts")
    try:
        addresses = _addresses(host, resolve)
    except OSError as exc:
        raise refuse(f"host {host!r} does not resolve") from exc
    if not addresses:
        raise refuse(f"host {host!r} does not resolve")
    try:
        base_categories = {_category(a) for a in _addresses(base_host, resolve)}
    except (OSError, ValueError):
        base_categories = set()
    permitted = ({"public"} | base_categories) - {"reserved"}
    for address in addresses:
        try:
            category = _category(address)
        except ValueError:
            raise refuse(f"host {host!r} resolves to an unusable address") from None
        if category not in permitted:
            raise refuse(
                f"{host!r} resolves to {address}, which is {_CATEGORY_NOTES[category]}, "
                f"and the base URL's host {base_host!r} is not"
            )
    return addresses


# --- error mapping --------------------------------------------------------------------------


def _status_error(status: int, headers: Mapping[str, str], what: str) -> OriginError:
    """The error for an HTTP status an operation cannot use (the shared HTTP table)."""
    retry_after = retry_after_seconds(headers.get("retry-after"))
    return status_error(status, what, protocol="http", retry_after=retry_after)


def _transport_error(exc: BaseException, what: str) -> OriginError:
    """The error for a urllib3 / connection failure: the one exception mapping.

    The message names the failure class, never the exception text (which can carry URLs
    with signed query strings).
    """
    reason: BaseException = exc
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        reason = exc.reason
    if isinstance(reason, SSLError) and any(
        isinstance(e, ssl.SSLCertVerificationError) for e in (*reason.args, reason.__cause__)
    ):
        # Retrying cannot fix a certificate: say so instead of looping through the queue.
        return OriginError(f"{what}: TLS certificate verification failed")
    if isinstance(reason, LocationValueError):
        return OriginError(f"{what}: invalid URL ({type(reason).__name__})")
    if isinstance(reason, NewConnectionError):  # before ConnectTimeoutError: a subclass of it
        detail = "cannot connect"
    elif isinstance(reason, ConnectTimeoutError):
        detail = "connection timed out"
    elif isinstance(reason, ReadTimeoutError | TimeoutError):  # the latter: a raw socket read
        detail = "read timed out"
    elif isinstance(reason, ProtocolError | HTTPException | OSError):
        detail = "connection broken"
    elif isinstance(reason, ResponseError):
        detail = "too many retries"
    else:
        detail = "request failed"
    return TransientOriginError(f"{what}: {detail} ({type(reason).__name__})")


class _OriginRetry(Retry):
    """urllib3's Retry, except that a ``Retry-After`` above :data:`MAX_RETRY_AFTER` ends
    the retries at once (the response is returned and mapped with its ``retry_after``)."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: urllib3.connectionpool.ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if response is not None:
            wait = self.get_retry_after(response)
            if wait is not None and wait > MAX_RETRY_AFTER:
                reason = ResponseError(f"Retry-After of {wait:.0f}s is too long to wait")
                raise MaxRetryError(_pool, url, reason)  # type: ignore[arg-type]
        return super().increment(method, url, response, error, _pool, _stacktrace)


# --- connections to approved addresses only ------------------------------------------------


def _open_socket(connection: HTTPConnection, addresses: tuple[str, ...]) -> socket.socket:
    """A socket to the first of ``addresses`` that accepts, on the connection's port.

    This replaces urllib3's own connect, which would look the host name up again: the
    addresses come from the one lookup that was checked, and no other is ever tried.
    Failures are raised as urllib3 raises them, so its retries and our mapping still apply.
    """
    error: OSError | None = None
    for address in addresses:
        try:
            sock = create_connection(
                (address, connection.port),
                connection.timeout,
                source_address=connection.source_address,
                socket_options=connection.socket_options,
            )
        except OSError as exc:  # refused or unreachable: try the next approved address
            error = exc
            continue
        sys.audit("http.client.connect", connection, connection.host, connection.port)
        return sock
    if isinstance(error, TimeoutError):
        raise ConnectTimeoutError(
            connection,
            f"Connection to {connection.host} timed out. (connect timeout={connection.timeout})",
        ) from error
    reason = error if error is not None else "no address to connect to"
    raise NewConnectionError(connection, f"Failed to establish a new connection: {reason}")


class _PinnedHTTPConnection(HTTPConnection):
    """An HTTP connection to fixed addresses; ``Host`` still names the host."""

    def __init__(self, *args: Any, addresses: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.addresses = addresses

    def _new_conn(self) -> socket.socket:
        return _open_socket(self, self.addresses)


class _PinnedHTTPSConnection(HTTPSConnection):
    """An HTTPS connection to fixed addresses. urllib3 wraps the socket with SNI and the
    certificate check on ``host`` (the name), never on the address."""

    def __init__(self, *args: Any, addresses: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.addresses = addresses

    def _new_conn(self) -> socket.socket:
        return _open_socket(self, self.addresses)


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


_PoolKey = tuple[str, str, int, tuple[str, ...]]


class _PinnedPools:
    """Connection pools by scheme, host, port *and* the addresses approved for them.

    A pooled connection is reused only by a request whose own lookup approved the very same
    addresses; when DNS answers differently, the request gets a pool (and connections) of
    its own. The least recently used pools beyond :data:`_POOLS_KEPT` are closed.
    """

    def __init__(self, *, maxsize: int, timeout: Timeout, retries: Retry) -> None:
        self._settings: dict[str, Any] = {
            "maxsize": maxsize,
            "timeout": timeout,
            "retries": retries,
        }
        self._pools: OrderedDict[_PoolKey, HTTPConnectionPool] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, scheme: str, host: str, port: int, addresses: tuple[str, ...]
    ) -> HTTPConnectionPool:
        """The pool for ``host`` whose connections go to ``addresses`` only."""
        key = (scheme, host, port, addresses)
        evicted: list[HTTPConnectionPool] = []
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            kind = _PinnedHTTPSPool if scheme == "https" else _PinnedHTTPPool
            pool = kind(host, port, addresses=addresses, **self._settings)
            self._pools[key] = pool
            while len(self._pools) > _POOLS_KEPT:
                evicted.append(self._pools.popitem(last=False)[1])
        for old in evicted:  # requests still running on them close their connection after
            old.close()
        return pool

    def pool_keys(self) -> list[_PoolKey]:
        """``(scheme, host, port, addresses)`` of every pool kept."""
        with self._lock:
            return list(self._pools)

    def clear(self) -> None:
        """Close every pool."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()


# --- metadata --------------------------------------------------------------------------------

_DIGEST_NAMES = {
    "md5": "md5",
    "sha-256": "sha256",
    "sha256": "sha256",
    "sha-1": "sha1",
    "sha1": "sha1",
    "sha": "sha1",
    "crc32c": "crc32c",
    "crc32": "crc32",
}
_DIGEST_SIZES = {"md5": 16, "sha256": 32, "sha1": 20, "crc32c": 4, "crc32": 4}
_SF_BYTES = re.compile(r"^:([A-Za-z0-9+/=]*):$")


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _add_digest(found: dict[str, bytes], name: str, raw: bytes | None) -> None:
    algorithm = _DIGEST_NAMES.get(name.strip().lower())
    if algorithm is None or raw is None or len(raw) != _DIGEST_SIZES[algorithm]:
        return
    found.setdefault(algorithm, raw)


def parse_checksums(headers: Mapping[str, str], *, whole_body: bool = True) -> Checksums:
    """Whole-object digests stated in response headers; unparsable ones are ignored.

    Read, in this order of precedence: RFC 9530 ``Repr-Digest`` (``sha-256=:B64:, md5=:B64:``),
    RFC 3230 ``Digest`` (``MD5=B64,SHA-256=B64``) and ``Content-MD5``.

    Args:
        headers: Response headers (case-insensitive mapping).
        whole_body: Whether the response body is the whole object; ``Content-MD5`` digests
            the body, so it is ignored on partial (206) responses.
    """
    found: dict[str, bytes] = {}
    for member in (headers.get("repr-digest") or "").split(","):
        name, sep, value = member.partition("=")
        match = _SF_BYTES.match(value.split(";", 1)[0].strip())
        if sep and match:
            _add_digest(found, name, _b64(match.group(1)))
    for member in (headers.get("digest") or "").split(","):
        name, sep, value = member.partition("=")
        if not sep:
            continue
        raw = _b64(value)
        if name.strip().lower() in ("crc32c", "crc32") and (raw is None or len(raw) != 4):
            with contextlib.suppress(ValueError):
                raw = bytes.fromhex(value.strip())  # some servers state CRCs in hex
        _add_digest(found, name, raw)
    content_md5 = headers.get("content-md5")
    if whole_body and content_md5:
        _add_digest(found, "md5", _b64(content_md5))
    return Checksums(**found)


def version_token(etag: str | None, last_modified: str | None) -> str | None:
    """The version token of a response: a strong ETag as is, else its Last-Modified.

    Weak ETags (``W/"…"``) cannot be used in ``If-Match``, so without a strong one the token
    is the Last-Modified date (as an HTTP-date in GMT); ``None`` when there is neither
    validator. The token is compared, never taken apart: a read is pinned with the
    :class:`ObjectInfo` it came with (ETag, Last-Modified and size).
    """
    if etag and not etag.startswith("W/"):
        return etag
    moment = http_date(last_modified)
    if moment is None:
        return None
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _safe_url(url: str) -> str:
    """A URL without query or fragment, for messages (signed URLs carry secrets there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


# --- the adapter ----------------------------------------------------------------------------


class HttpAdapter(OriginAdapter[HttpOrigin]):
    """Reads objects from any HTTP(S) server below ``base_url``.

    Args:
        config: The origin's config.
        secrets: Resolves the auth secrets.
        resolver: Host name → addresses (DNS by default; answers are reused for
            :data:`_DNS_TTL` seconds). Every connection goes to an address it returned, taken
            once per request and redirect hop; for a redirect, the addresses
            :func:`check_redirect` judged.
    """

    config_model: ClassVar[type[HttpOrigin]] = HttpOrigin
    chunk_size: ClassVar[int] = CHUNK_SIZE

    def __init__(
        self,
        config: HttpOrigin,
        *,
        secrets: SecretResolver | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        super().__init__(config, secrets=secrets)
        self._resolve: Resolver = _Lookups(resolver if resolver is not None else resolve_host)
        self._base = urlsplit(config.base_url)
        self._retry = _OriginRetry(
            total=config.retries,
            redirect=False,
            backoff_factor=config.backoff,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "HEAD"}),
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
        )
        self._pool = _PinnedPools(
            maxsize=_POOL_SIZE,
            timeout=Timeout(connect=config.connect_timeout, read=config.read_timeout),
            retries=self._retry,
        )

    # --- data plane ------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key``; falls back to ``GET Range: bytes=0-0`` when ``HEAD`` is
        refused (405/501) or states no length."""
        url = self._url(key)
        what = f"HEAD {key!r} at origin {self.name!r}"
        response = self._send("HEAD", url, {}, what)
        try:
            size = _int(response.headers.get("content-length"))
            if response.status in (405, 501) or (200 <= response.status < 300 and size is None):
                self._discard(response)
                what = f"GET {key!r} (bytes=0-0) at origin {self.name!r}"
                response = self._send("GET", url, {"Range": "bytes=0-0"}, what)
                return self._probe_info(key, response, what)
            if not 200 <= response.status < 300 or size is None:
                raise _status_error(response.status, response.headers, what)
            return self._info(key, response.headers, size, whole_body=True)
        finally:
            self._discard(response)

    def get_once(self, key: str, options: GetOptions) -> RawGet:
        """One GET of ``key`` (or ``options.range`` of it), raw.

        The pin goes out as ``If-Match`` when it has a strong ETag, else as
        ``If-Unmodified-Since`` its Last-Modified; the shared read path checks the answer's
        validators and size as well (servers may ignore preconditions).
        """
        url = self._url(key)
        range = options.range
        what = f"GET {key!r}{f' ({range})' if range else ''} at origin {self.name!r}"
        headers: dict[str, str] = {}
        if range is not None:
            headers["Range"] = range.header()
        etag = options.etag_condition()
        pin = options.pin
        if etag is not None:
            headers["If-Match"] = etag
        elif pin is not None and pin.last_modified is not None:
            headers["If-Unmodified-Since"] = format_datetime(
                pin.last_modified.astimezone(UTC), usegmt=True
            )
        response = self._send("GET", url, headers, what)
        try:
            info, served = self._answer(key, response, pin, what)
        except BaseException:
            self._discard(response)
            raise
        body = _HttpBody(response, _int(response.headers.get("content-length")), what)
        return RawGet(body=body, info=info, served=served)

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.clear()

    # --- edge plane ------------------------------------------------------------------------

    def cloudfront_origin(self) -> OriginSpec:
        """Domain, path (no trailing slash), protocol and port of ``base_url``."""
        protocol: Literal["https", "http"] = "https" if self._base.scheme == "https" else "http"
        port = self._base.port or (443 if protocol == "https" else 80)
        return OriginSpec(
            domain=self._base.hostname or "",
            path=self._base.path.rstrip("/"),
            protocol=protocol,
            port=port,
        )

    @classmethod
    def edge_recipe(cls, config: HttpOrigin) -> Mapping[str, Any] | None:
        """Basic, Bearer and custom headers, as headers whose values are secrets."""
        auth = config.auth
        headers: dict[str, dict[str, Any]]
        if isinstance(auth, HttpBasicAuth):
            spec = {"secret": secret_reference(auth.password), "basic_username": auth.username}
            headers = {"authorization": spec}
        elif isinstance(auth, HttpBearerAuth):
            headers = {
                "authorization": {"secret": secret_reference(auth.token), "prefix": "Bearer "}
            }
        elif isinstance(auth, HttpHeadersAuth):
            headers = {
                name: {"secret": secret_reference(ref)} for name, ref in auth.headers.items()
            }
        else:
            return None
        return {"kind": "headers", "headers": headers}

    def sign(self, request: OriginRequest) -> OriginRequest:
        """Add the configured credentials (Basic, Bearer or custom headers)."""
        auth = self._auth_headers()
        return request.with_headers(auth) if auth else request

    # --- internals -------------------------------------------------------------------------

    def _url(self, key: str) -> str:
        return self.config.base_url.rstrip("/") + self.origin_uri(key)

    def _auth_headers(self) -> dict[str, str]:
        auth = self.config.auth
        if isinstance(auth, HttpBasicAuth):
            password = self.secrets.resolve(auth.password).get_secret_value()
            pair = base64.b64encode(f"{auth.username}:{password}".encode()).decode("ascii")
            return {"Authorization": f"Basic {pair}"}
        if isinstance(auth, HttpBearerAuth):
            token = self.secrets.resolve(auth.token).get_secret_value()
            return {"Authorization": f"Bearer {token}"}
        if isinstance(auth, HttpHeadersAuth):
            return {
                name: self.secrets.resolve(ref).get_secret_value()
                for name, ref in auth.headers.items()
            }
        return {}

    def _trusted(self, url: str) -> bool:
        """Whether credentials may be sent to ``url`` (the base host, never downgraded)."""
        parts = urlsplit(url)
        if _normal_host(parts.hostname) != _normal_host(self._base.hostname):
            return False
        return not (self._base.scheme == "https" and parts.scheme != "https")

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], what: str
    ) -> BaseHTTPResponse:
        """One request, following allowed redirects; the body is left unread."""
        current = url
        addresses = self._lookup(current, what)  # the configured host: trusted, not judged
        for _hop in range(self.config.max_redirects + 1):
            # Case-insensitive, and the operation's own headers (Range, If-Match, …) last:
            # a configured auth header can neither duplicate nor override them.
            request_headers = HTTPHeaderDict(_BASE_HEADERS)
            if self._trusted(current):
                request_headers.update(self._auth_headers())
            request_headers.update(headers)
            response = self._request(method, current, addresses, request_headers, what)
            if response.status not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("location")
            self._discard(response)
            if not location:
                raise OriginError(f"{what}: HTTP {response.status} without a Location")
            target = urljoin(current, location.strip())
            # Every hop is judged, and the next connection goes to what was judged.
            approved = check_redirect(
                self.config.base_url, target, self.config.redirect_hosts, resolve=self._resolve
            )
            addresses = tuple(approved)
            current = target
        raise OriginError(
            f"{what}: more than {self.config.max_redirects} redirect(s), "
            f"the last to {_safe_url(current)}"
        )

    def _lookup(self, url: str, what: str) -> tuple[str, ...]:
        """The addresses of ``url``'s host, from one lookup."""
        host = _normal_host(urlsplit(url).hostname)
        try:
            addresses = tuple(_addresses(host, self._resolve))
        except (OSError, UnicodeError) as exc:
            raise TransientOriginError(
                f"{what}: cannot connect (the host name does not resolve)"
            ) from exc
        if not addresses:
            raise TransientOriginError(f"{what}: cannot connect (the host name does not resolve)")
        return addresses

    def _request(
        self,
        method: str,
        url: str,
        addresses: tuple[str, ...],
        headers: HTTPHeaderDict,
        what: str,
    ) -> BaseHTTPResponse:
        """Send one request to ``addresses`` (urllib3 retries it there); body left unread."""
        try:
            parsed = parse_url(url)
            if not parsed.host:
                raise LocationValueError("no host")
            scheme = (parsed.scheme or "http").lower()
            port = parsed.port or (443 if scheme == "https" else 80)
            pool = self._pool.get(scheme, parsed.host.lower(), port, addresses)
            return pool.urlopen(
                method,
                parsed.request_uri,
                headers=headers,
                redirect=False,
                assert_same_host=False,
                retries=self._retry,
                preload_content=False,
                decode_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise _transport_error(exc, what) from exc

    @staticmethod
    def _discard(response: BaseHTTPResponse) -> None:
        """Release a response we do not stream; a large unread body costs the connection."""
        remaining = getattr(response, "length_remaining", None)
        if remaining is not None and remaining <= _DRAIN_LIMIT:
            response.drain_conn()
        else:
            response.close()
        response.release_conn()

    def _probe_info(self, key: str, response: BaseHTTPResponse, what: str) -> ObjectInfo:
        headers = response.headers
        status = response.status
        if status == 206:
            parsed = content_range(headers.get("content-range"))
            size = parsed[2] if parsed else None
        elif status == 416:  # nothing to serve at byte 0: the object is empty
            parsed = content_range(headers.get("content-range"))
            size = parsed[2] if parsed and parsed[2] is not None else 0
        elif 200 <= status < 300:
            size = _int(headers.get("content-length"))
        else:
            raise _status_error(status, headers, what)
        if size is None:
            raise OriginError(f"{what}: the server states no object size")
        return self._info(key, headers, size, whole_body=status == 200)

    def _info(
        self, key: str, headers: Mapping[str, str], size: int, *, whole_body: bool
    ) -> ObjectInfo:
        etag = headers.get("etag")
        last_modified = headers.get("last-modified")
        metadata: dict[str, str] = {}
        prefix = (self.config.metadata_header_prefix or "").lower()
        if prefix:
            for name in headers:
                lower = name.lower()
                if lower.startswith(prefix) and len(lower) > len(prefix):
                    metadata[lower[len(prefix) :]] = headers[name]
        version = version_token(etag, last_modified)
        return ObjectInfo(
            key=key,
            size=size,
            etag=etag,
            version=version,
            last_modified=http_date(last_modified),
            content_type=headers.get("content-type"),
            content_encoding=headers.get("content-encoding"),
            cache_control=headers.get("cache-control"),
            content_disposition=headers.get("content-disposition"),
            content_language=headers.get("content-language"),
            expires=headers.get("expires"),
            metadata=MappingProxyType(metadata),
            checksums=parse_checksums(headers, whole_body=whole_body),
        )

    def _answer(
        self, key: str, response: BaseHTTPResponse, pin: ObjectInfo | None, what: str
    ) -> tuple[ObjectInfo, tuple[int, int] | None]:
        """The object a GET answer describes, and the window it states it serves."""
        headers = response.headers
        if response.status == 206:
            parsed = content_range(headers.get("content-range"))
            first, last, total = parsed if parsed is not None else (None, None, None)
            if first is None or last is None or total is None:
                raise OriginError(f"{what}: a 206 answer without a usable Content-Range")
            return self._info(key, headers, total, whole_body=False), (first, last + 1)
        if response.status != 200:
            raise _status_error(response.status, headers, what)
        size = _int(headers.get("content-length"))
        if size is None and pin is not None:
            size = pin.size  # a chunked body: the pin says how long it must be
        if size is None:
            raise OriginError(f"{what}: the server states no object size")
        return self._info(key, headers, size, whole_body=True), None


class _HttpBody:
    """One response body for the shared read path; the connection is kept for reuse only
    when the body was read to its announced end without a hitch."""

    def __init__(self, response: BaseHTTPResponse, announced: int | None, what: str) -> None:
        self._response: BaseHTTPResponse | None = response
        self._announced = announced
        self._received = 0
        self._finished = False
        self._what = what
        # The http.client response under urllib3's. The body is requested undecoded, so for
        # a body of stated length without transfer framing the wire bytes are the body and
        # can go straight into the caller's buffer (urllib3's read1 returns a new ``bytes``
        # per receive, copied again into the buffer).
        raw = getattr(response, "_fp", None)
        direct = (
            isinstance(raw, http.client.HTTPResponse)
            and not raw.chunked
            and raw.length is not None
            and raw.fp is not None
        )
        self._raw: http.client.HTTPResponse | None = raw if direct else None
        self._socket: Callable[[memoryview], int | None] | None = None

    def readinto(self, buffer: memoryview) -> int:
        response = self._response
        if response is None:
            return 0
        # At most one receive per call: a read that times out midway would lose the bytes
        # it already had, and the resume would ask for them again.
        window = buffer[: min(len(buffer), CHUNK_SIZE)]
        raw = self._raw
        try:
            if raw is not None:
                count = self._read_raw(raw, window)
            else:
                chunk = response.read1(len(window), decode_content=False)
                count = len(chunk)
                window[:count] = chunk
        except (urllib3.exceptions.HTTPError, HTTPException, OSError) as exc:
            raise _transport_error(exc, self._what) from exc
        if not count:
            announced = self._announced
            if announced is not None and self._received != announced:
                if raw is not None:
                    # urllib3 raises IncompleteRead for a short body: say it the same way.
                    short = http.client.IncompleteRead(b"", announced - self._received)
                    raise _transport_error(short, self._what)
                raise TransientOriginError(
                    f"{self._what}: the body ended after {self._received} of {announced} bytes"
                )
            self._finished = True
            return 0
        self._received += count
        return count

    def _read_raw(self, raw: http.client.HTTPResponse, window: memoryview) -> int:
        """One receive into ``window``, keeping http.client's length bookkeeping."""
        remaining = raw.length or 0
        if not remaining or raw.fp is None:
            return 0
        window = window[:remaining]
        receive = self._socket
        if receive is None:
            # Whatever arrived with the headers sits in the reader's buffer: read1 returns
            # that (no receive), or does one receive when it is empty. Once a read1 returns
            # less than asked, the buffer is empty and stays so while we read the socket.
            chunk = raw.fp.read1(len(window))
            count = len(chunk)
            window[:count] = chunk
            if count < len(window):
                self._socket = raw.fp.raw.readinto
        else:
            count = receive(window) or 0
        raw.length = remaining - count
        if raw.length == 0:
            # As http.client does at the end of a body: the connection may serve the next
            # request once this response reads as closed.
            raw.close()
        return count

    def close(self) -> None:
        response, self._response = self._response, None
        if response is None:
            return
        complete = self._finished or (
            self._announced is not None and self._received >= self._announced
        )
        if not complete:
            response.close()  # unread bytes would poison the pooled connection
        response.release_conn()
