"""Strict proxies: rules the real stores enforce and the local emulators do not.

Local emulators accept requests that Amazon S3 and Google Cloud Storage refuse (moto checks no
signatures; fake-gcs-server checks neither signatures nor header families), or refuse them for
another reason (SeaweedFS signs every ``x-amz-*`` header it receives and answers
``SignatureDoesNotMatch``), so a test that passes against them can still fail in production.
Each proxy here sits in front of an emulator, refuses what the real store refuses (with the
store's own status and error code), and forwards everything else unchanged:

* :class:`StrictS3Proxy` — S3 refuses a Signature Version 4 request (``Authorization``
  header or presigned query) that carries an ``x-amz-*`` header not named in its signed
  headers: ``403 AccessDenied`` "There were headers present in the request which were not
  signed", with the names in ``<HeadersNotSigned>``. Sources: Amazon S3 API Reference,
  "Signature Calculations for the Authorization Header"
  (https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html: the
  canonical headers must include every ``x-amz-*`` header the request carries) and
  "Authenticating Requests: Using Query Parameters"
  (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html). CloudFront's
  own ``X-Amz-Cf-Id`` is no exception: S3 answers a request whose signature leaves it out with
  "header 'x-amz-cf-id' must be included in signature"
  (https://github.com/pypi/infra/issues/219).
* :class:`StrictGcsProxy` — Cloud Storage's XML API refuses a request that carries both
  ``x-amz-*`` and ``x-goog-*`` headers: ``400 ExcessHeaderValues`` "Requests cannot specify
  both x-amz and x-goog headers." The XML API takes either family — ``x-amz-*`` in the "Simple
  migration from Amazon S3 to Cloud Storage" scenario
  (https://cloud.google.com/storage/docs/aws-simple-migration), ``x-goog-*`` otherwise
  ("HTTP headers and query string parameters for XML API",
  https://cloud.google.com/storage/docs/xml-api/reference-headers) — never both in one
  request. Given HMAC keys, it also verifies ``GOOG4-HMAC-SHA256`` signatures (header and
  query-string forms, which the emulator ignores) and refuses ``x-goog-*`` headers a signature
  does not cover, as Cloud Storage's V4 signing process requires ("Canonical requests",
  https://cloud.google.com/storage/docs/authentication/canonical-requests).

The checks are also plain functions (:func:`unsigned_amz_headers`,
:func:`mixed_header_families`, :func:`goog4_problem`) for tests that inspect a request
without sending it. Standard library only.
"""

from __future__ import annotations

__all__ = [
    "Refusal",
    "StrictGcsProxy",
    "StrictProxy",
    "StrictS3Proxy",
    "goog4_problem",
    "mixed_header_families",
    "unsigned_amz_headers",
]

import hashlib
import hmac
import http.client
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from xml.sax.saxutils import escape

from backorigin._servers import Service

_AWS4 = "AWS4-HMAC-SHA256"
_GOOG4 = "GOOG4-HMAC-SHA256"
_GOOG4_RSA = "GOOG4-RSA-SHA256"
# Hop-by-hop headers a proxy must not forward (RFC 9110, section 7.6.1).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_CHUNK = 256 * 1024


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _query(query: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(query, keep_blank_values=True))


def _credential_fields(authorization: str, algorithm: str) -> dict[str, str] | None:
    """``Credential``, ``SignedHeaders`` and ``Signature`` of a V4 ``Authorization`` value."""
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme != algorithm:
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    return fields


def unsigned_amz_headers(
    headers: Mapping[str, str], query: str = "", *, tolerated: frozenset[str] = frozenset()
) -> list[str] | None:
    """The ``x-amz-*`` headers a SigV4 request carries without having signed them.

    Args:
        headers: The request's headers (any case).
        query: The raw query string (a presigned request names its signed headers there).
        tolerated: Lower-case names to let through unsigned.

    Returns:
        None when the request is not signed with SigV4 (anonymous, or another scheme);
        otherwise the sorted lower-case names S3 would refuse (empty when there are none).
    """
    lowered = _lower(headers)
    fields = _credential_fields(lowered.get("authorization", ""), _AWS4)
    if fields is not None:
        signed = fields.get("SignedHeaders", "")
    else:
        params = _query(query)
        if params.get("X-Amz-Algorithm") != _AWS4:
            return None
        signed = params.get("X-Amz-SignedHeaders", "")
    names = {name.strip().lower() for name in signed.split(";") if name.strip()}
    return sorted(
        name
        for name in lowered
        if name.startswith("x-amz-") and name not in names and name not in tolerated
    )


def mixed_header_families(headers: Mapping[str, str]) -> bool:
    """Whether a request carries both ``x-amz-*`` and ``x-goog-*`` headers (GCS refuses it)."""
    names = [name.lower() for name in headers]
    return any(n.startswith("x-amz-") for n in names) and any(
        n.startswith("x-goog-") for n in names
    )


# --- GOOG4-HMAC-SHA256, written out from Google's "Signatures" and "Canonical requests" pages --


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def _canonical_query(query: str, *, without: str | None = None) -> str:
    pairs = [
        (urllib.parse.unquote_plus(k), urllib.parse.unquote_plus(v))
        for k, _, v in (p.partition("=") for p in query.split("&") if p)
    ]
    encoded = sorted((_quote(k), _quote(v)) for k, v in pairs if k != without)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _goog4_string_to_sign(
    algorithm: str,
    method: str,
    path: str,
    canonical_query: str,
    headers: Mapping[str, str],
    signed_names: list[str],
    payload: str,
    stamp: str,
    scope: str,
) -> str:
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed_names
    )
    canonical = "\n".join(
        [method, path, canonical_query, canonical_headers, ";".join(signed_names), payload]
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return "\n".join([algorithm, stamp, scope, digest])


def _goog4_hmac_signature(secret: str, to_sign: str, scope: str) -> str:
    key = hmac.new(f"GOOG4{secret}".encode(), scope.split("/")[0].encode(), hashlib.sha256)
    derived = key.digest()
    for part in scope.split("/")[1:]:
        derived = hmac.new(derived, part.encode(), hashlib.sha256).digest()
    return hmac.new(derived, to_sign.encode(), hashlib.sha256).hexdigest()


def _goog4_rsa_verifies(public_key_pem: str, to_sign: str, signature: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_public_key(public_key_pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(bytes.fromhex(signature), to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def goog4_problem(
    method: str,
    target: str,
    headers: Mapping[str, str],
    keys: Mapping[str, str],
    *,
    rsa_keys: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> tuple[int, str, str] | None:
    """Why Cloud Storage would refuse a V4-signed request, or None if it would not.

    ``GOOG4-HMAC-SHA256`` is checked with ``keys``; a ``GOOG4-RSA-SHA256`` signed URL (a
    service account's) with ``rsa_keys``.

    Checks the signature (header form: ``Authorization``; query form: ``X-Goog-Algorithm``,
    ``X-Goog-Credential``, ``X-Goog-Date``, ``X-Goog-Expires``, ``X-Goog-SignedHeaders``,
    ``X-Goog-Signature``), the expiry of the query form, and that every ``x-goog-*`` header
    the request carries is signed. Requests with neither form are not checked.

    Args:
        method: The HTTP method.
        target: The request target as sent (path and query, percent-encoded).
        headers: The request's headers, ``host`` included.
        keys: HMAC secrets by access id.
        rsa_keys: Service accounts' public keys (PEM) by e-mail address.
        now: The time to check expiry against (default: now).

    Returns:
        ``(status, error code, message)`` of the refusal, or None.
    """
    lowered = _lower(headers)
    path, _, query = target.partition("?")
    fields = _credential_fields(lowered.get("authorization", ""), _GOOG4)
    params = _query(query)
    if fields is not None:
        credential = fields.get("Credential", "")
        signed = fields.get("SignedHeaders", "")
        signature = fields.get("Signature", "")
        stamp = lowered.get("x-goog-date", "")
        canonical_query = _canonical_query(query)
        payload = lowered.get("x-goog-content-sha256", "UNSIGNED-PAYLOAD")
    elif params.get("X-Goog-Algorithm") in (_GOOG4, _GOOG4_RSA):
        credential = params.get("X-Goog-Credential", "")
        signed = params.get("X-Goog-SignedHeaders", "")
        signature = params.get("X-Goog-Signature", "")
        stamp = params.get("X-Goog-Date", "")
        canonical_query = _canonical_query(query, without="X-Goog-Signature")
        payload = "UNSIGNED-PAYLOAD"
        try:
            issued = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            lifetime = int(params.get("X-Goog-Expires", ""))
        except ValueError:
            return 400, "AuthenticationRequired", "Malformed X-Goog-Date or X-Goog-Expires."
        if not 1 <= lifetime <= 604800:
            return 400, "InvalidArgument", "X-Goog-Expires must be 1 to 604800 seconds."
        if (now or datetime.now(UTC)) > issued + timedelta(seconds=lifetime):
            return 400, "ExpiredToken", "The provided token has expired."
    else:
        return None
    access_id, _, scope = credential.partition("/")
    signed_names = [name for name in signed.split(";") if name]
    missing = sorted(
        name for name in lowered if name.startswith("x-goog-") and name not in signed_names
    )
    if missing:
        return 400, "MissingSecurityHeader", f"Unsigned x-goog headers: {', '.join(missing)}."
    algorithm = params.get("X-Goog-Algorithm", _GOOG4) if fields is None else _GOOG4
    to_sign = _goog4_string_to_sign(
        algorithm,
        method,
        path,
        canonical_query,
        lowered,
        signed_names,
        payload,
        stamp,
        scope,
    )
    if algorithm == _GOOG4_RSA:
        public_key = (rsa_keys or {}).get(access_id)
        if public_key is None:
            return 403, "InvalidAccessKeyId", "The service account is not known."
        if not _goog4_rsa_verifies(public_key, to_sign, signature):
            return 403, "SignatureDoesNotMatch", "The request signature does not match."
        return None
    secret = keys.get(access_id)
    if secret is None:
        return 403, "InvalidAccessKeyId", "The access id is not known."
    if not hmac.compare_digest(_goog4_hmac_signature(secret, to_sign, scope), signature):
        return 403, "SignatureDoesNotMatch", "The request signature does not match."
    return None


# --- the proxies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A request a strict proxy refused, and why."""

    method: str
    target: str
    status: int
    code: str
    message: str
    headers_not_signed: tuple[str, ...] = ()


class StrictProxy(Service):
    """A reverse proxy on 127.0.0.1 that refuses requests :meth:`check` objects to.

    Subclasses implement :meth:`check`. Refused requests are answered with an XML error
    document and recorded in :attr:`refused`; the others are forwarded to ``upstream``
    unchanged (``Host`` too, unless ``rewrite_host``), and the answer is passed back.

    Use it as a context manager; :attr:`url` is where clients send requests.

    Args:
        upstream: The emulator's base URL (``http://127.0.0.1:PORT``).
        rewrite_host: Send the upstream's own ``Host`` (for servers that route on it).
    """

    xml_declaration: ClassVar[str] = '<?xml version="1.0" encoding="UTF-8"?>'

    def __init__(self, upstream: str, *, rewrite_host: bool = False) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rewrite_host = rewrite_host
        self.refused: list[Refusal] = []
        self.forwarded = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        return int(self._server.server_address[1])

    def check(self, method: str, target: str, headers: Mapping[str, str]) -> Refusal | None:
        """The refusal for a request, or None to forward it. ``headers`` are lower-case."""
        raise NotImplementedError

    def error_body(self, refusal: Refusal) -> bytes:
        """The XML error document of a refusal."""
        return (
            f"{self.xml_declaration}\n<Error><Code>{escape(refusal.code)}</Code>"
            f"<Message>{escape(refusal.message)}</Message></Error>"
        ).encode()

    def start(self) -> StrictProxy:
        """Start serving (in a daemon thread)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {name.lower(): value for name, value in self.headers.items()}
                refusal = proxy.check(self.command, self.path, headers)
                if refusal is not None:
                    with proxy._lock:
                        proxy.refused.append(refusal)
                    self._answer_refusal(refusal)
                    return
                with proxy._lock:
                    proxy.forwarded += 1
                self._forward(body)

            def _answer_refusal(self, refusal: Refusal) -> None:
                data = proxy.error_body(refusal)
                self.send_response(refusal.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _forward(self, body: bytes | None) -> None:
                host, port = proxy.upstream
                connection = http.client.HTTPConnection(host, port, timeout=30)
                try:
                    sent = {
                        name: value
                        for name, value in self.headers.items()
                        if name.lower() not in _HOP_BY_HOP
                    }
                    if proxy.rewrite_host:
                        sent = {k: v for k, v in sent.items() if k.lower() != "host"}
                        sent["Host"] = f"{host}:{port}"
                    connection.request(self.command, self.path, body=body, headers=sent)
                    response = connection.getresponse()
                    length = response.getheader("content-length")
                    data = None if length is not None else response.read()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if name.lower() not in _HOP_BY_HOP | {"content-length", "date", "server"}:
                            self.send_header(name, value)
                    self.send_header("Content-Length", length or str(len(data or b"")))
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    if data is not None:
                        self.wfile.write(data)
                        return
                    while chunk := response.read(_CHUNK):
                        self.wfile.write(chunk)
                finally:
                    connection.close()

            def do_GET(self) -> None:
                self.handle_any()

            def do_HEAD(self) -> None:
                self.handle_any()

            def do_PUT(self) -> None:
                self.handle_any()

            def do_POST(self) -> None:
                self.handle_any()

            def do_DELETE(self) -> None:
                self.handle_any()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


class StrictS3Proxy(StrictProxy):
    """Refuses SigV4 requests carrying unsigned ``x-amz-*`` headers, as Amazon S3 does.

    Anonymous requests are forwarded whatever headers they carry. The ``Host`` header is
    forwarded as the client sent it, so the emulator checks signatures made for the proxy's
    address.

    Args:
        upstream: The S3 emulator's base URL.
        tolerated: Lower-case ``x-amz-*`` names to let through unsigned (none by default:
            the documented rule has no exceptions, so the proxy makes none).
    """

    def __init__(self, upstream: str, *, tolerated: frozenset[str] = frozenset()) -> None:
        super().__init__(upstream)
        self.tolerated = tolerated

    def check(self, method: str, target: str, headers: Mapping[str, str]) -> Refusal | None:
        query = target.partition("?")[2]
        unsigned = unsigned_amz_headers(headers, query, tolerated=self.tolerated)
        if not unsigned:
            return None
        return Refusal(
            method,
            target,
            403,
            "AccessDenied",
            "There were headers present in the request which were not signed",
            tuple(unsigned),
        )

    def error_body(self, refusal: Refusal) -> bytes:
        # S3 names the offending headers in <HeadersNotSigned>.
        names = escape(", ".join(refusal.headers_not_signed))
        return (
            f"{self.xml_declaration}\n<Error><Code>{refusal.code}</Code>"
            f"<Message>{refusal.message}</Message>"
            f"<HeadersNotSigned>{names}</HeadersNotSigned></Error>"
        ).encode()


class StrictGcsProxy(StrictProxy):
    """Refuses what Cloud Storage's XML API refuses and fake-gcs-server lets through.

    Always: a request with both ``x-amz-*`` and ``x-goog-*`` headers. With ``hmac_keys``
    or ``rsa_keys``: a V4-signed request (``GOOG4-HMAC-SHA256`` in either form, or a
    ``GOOG4-RSA-SHA256`` signed URL) whose signature does not verify, that has expired, or
    that carries ``x-goog-*`` headers it did not sign. The upstream's own ``Host`` is sent,
    since fake-gcs-server routes path-style XML requests on it.

    Args:
        upstream: fake-gcs-server's base URL.
        hmac_keys: HMAC secrets by access id, to verify signatures with.
        rsa_keys: Service accounts' public keys (PEM) by e-mail address.
    """

    def __init__(
        self,
        upstream: str,
        *,
        hmac_keys: Mapping[str, str] | None = None,
        rsa_keys: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(upstream, rewrite_host=True)
        self.hmac_keys = dict(hmac_keys or {})
        self.rsa_keys = dict(rsa_keys or {})

    def check(self, method: str, target: str, headers: Mapping[str, str]) -> Refusal | None:
        if mixed_header_families(headers):
            return Refusal(
                method,
                target,
                400,
                "ExcessHeaderValues",
                "Requests cannot specify both x-amz and x-goog headers.",
            )
        if self.hmac_keys or self.rsa_keys:
            problem = goog4_problem(method, target, headers, self.hmac_keys, rsa_keys=self.rsa_keys)
            if problem is not None:
                return Refusal(method, target, *problem)
        return None
