"""The Google Cloud Storage origin adapter.

Three auth modes (see :mod:`backorigin.config.origins`), two APIs:

* ``anonymous`` and ``service_account`` read through google-cloud-storage (the JSON API);
  ``service_account`` takes the key JSON from a secret reference, or Application Default
  Credentials without one. Access tokens are minted by google-auth and shared by the data
  plane and :meth:`GcsAdapter.sign`, refreshed under a lock shortly before they expire.
* ``hmac`` reads through the XML API with urllib3, every request signed by
  :class:`V4Signer` (``GOOG4-HMAC-SHA256``); the same signer signs CloudFront's requests
  at the edge, in the query string (a signed URL) since CloudFront adds ``X-Amz-Cf-Id``.

Reads are pinned to an object's *generation*: the metadata request and every ranged data
request carry ``ifGenerationMatch`` / ``x-goog-if-generation-match``, and the generation the
server states in its answer is checked as well, so a server that ignores the precondition
still cannot hand out bytes of another version. Objects are read raw (``Content-Encoding``
is never decoded) in ranged requests of ``chunk_size`` bytes, so memory stays bounded.

Retries happen only inside the SDK's own machinery: google-cloud-storage's
``DEFAULT_RETRY`` (a :class:`google.api_core.retry.Retry`), configured from the origin's
``retries`` and ``backoff``, wraps every JSON call and every XML request.
SDK and transport exceptions are translated into :mod:`backorigin.errors` by
:func:`_origin_error`, and nowhere else.

Importing this module imports no SDK: the edge function loads it, and ``sign`` needs at most
google-auth (service_account) or nothing but the standard library (hmac).
"""

from __future__ import annotations

__all__ = [
    "EMULATOR_ENV",
    "READ_ONLY_SCOPE",
    "STORAGE_HOST",
    "GcsAdapter",
    "V4Signer",
    "canonical_path",
    "canonical_query",
]

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import quote, unquote, urlsplit

from pydantic import SecretStr

from backorigin.adapters.base import ObjectStream, OriginAdapter, extra_requirements, require
from backorigin.adapters.headers import http_date, retry_after_seconds
from backorigin.config.origins import (
    GcsHmacAuth,
    GcsOrigin,
    GcsServiceAccountAuth,
    OriginConfig,
)
from backorigin.config.secrets import SecretResolver
from backorigin.errors import (
    BackoriginError,
    InvalidRange,
    ObjectNotFound,
    OriginError,
    PermissionDenied,
    PreconditionFailed,
    TransientOriginError,
    Unauthenticated,
)
from backorigin.keys import validate_key
from backorigin.types import (
    ByteRange,
    Checksums,
    DeploymentNeeds,
    FunctionRole,
    ObjectInfo,
    OriginRequest,
    OriginSpec,
)

STORAGE_HOST = "storage.googleapis.com"
"""The host of the XML API (and of public object URLs)."""
READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
"""The OAuth scope tokens are minted with: reading objects is all backorigin does."""
CHUNK_SIZE = 8 * 1024 * 1024
"""Bytes per ranged request (JSON API) or per yielded chunk (XML API) of a read."""
PAGE_SIZE = 1000
"""Objects per listing page."""
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_POOL_SIZE = 32  # connections kept per host; the copy engine reads ranges in parallel
_ERROR_BODY_LIMIT = 64 * 1024  # error bodies are read (to keep the connection) up to this
_T = TypeVar("_T")


# --- request signing (GOOG4-HMAC-SHA256) ----------------------------------------------------


def _encode(text: str) -> str:
    """RFC 3986 percent-encoding: everything but ``A-Z a-z 0-9 - _ . ~``."""
    return quote(text, safe="")


def canonical_path(path: str) -> str:
    """The canonical form of a (percent-encoded) request path, as V4 signatures use it.

    Each segment is decoded and re-encoded with RFC 3986's unreserved set, so an encoded
    slash stays inside its segment and equivalent spellings sign the same.
    """
    if not path:
        return "/"
    return "/".join(_encode(unquote(segment)) for segment in path.split("/"))


def canonical_query(query: str) -> str:
    """The canonical form of a query string: pairs encoded per RFC 3986, sorted.

    A ``+`` is taken literally (as in a path), not as a space.
    """
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((_encode(unquote(name)), _encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class V4Signer:
    """Signs requests with an HMAC key, the way Cloud Storage's XML API checks them.

    ``GOOG4-HMAC-SHA256`` is AWS Signature Version 4 with Google's names: the algorithm
    ``GOOG4-HMAC-SHA256``, the key chain seeded with ``"GOOG4" + secret`` and closed with
    ``goog4_request``, the headers ``x-goog-date`` and ``x-goog-content-sha256``. With
    ``scheme="AWS4"`` (and an AWS service and region) the same code produces plain SigV4,
    which is how the implementation is checked against an independent one.

    Signed: ``host``, every ``x-goog-*`` (``x-amz-*``) header of the request, the date and
    the payload hash ``UNSIGNED-PAYLOAD`` (GET and HEAD carry no body).

    Attributes:
        access_id: The HMAC key's access ID.
        secret: The HMAC key's secret (never shown in ``repr``).
        region: The credential scope's region; Cloud Storage accepts ``auto``.
        service: The credential scope's service.
        scheme: ``GOOG4`` for Cloud Storage, ``AWS4`` for plain SigV4.
    """

    access_id: str
    secret: SecretStr = field(repr=False)
    region: str = "auto"
    service: str = "storage"
    scheme: Literal["GOOG4", "AWS4"] = "GOOG4"

    @property
    def algorithm(self) -> str:
        """``GOOG4-HMAC-SHA256`` (or ``AWS4-HMAC-SHA256``)."""
        return f"{self.scheme}-HMAC-SHA256"

    @property
    def header_prefix(self) -> str:
        """``x-goog-`` (or ``x-amz-``): the headers that are always signed."""
        return "x-goog-" if self.scheme == "GOOG4" else "x-amz-"

    def scope(self, day: str) -> str:
        """The credential scope of ``day`` (``YYYYMMDD``)."""
        return f"{day}/{self.region}/{self.service}/{self.scheme.lower()}_request"

    def signing_key(self, day: str) -> bytes:
        """The key derived from the secret for ``day``, region and service."""
        key = _hmac(f"{self.scheme}{self.secret.get_secret_value()}".encode(), day)
        for part in (self.region, self.service, f"{self.scheme.lower()}_request"):
            key = _hmac(key, part)
        return key

    def canonical_request(
        self, method: str, path: str, query: str, headers: Mapping[str, str]
    ) -> tuple[str, str]:
        """The canonical request and the signed header names for already-final headers."""
        normal = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
        names = sorted(normal)
        lines = [
            method.upper(),
            canonical_path(path),
            canonical_query(query),
            "".join(f"{name}:{normal[name]}\n" for name in names),
            ";".join(names),
            normal.get(f"{self.header_prefix}content-sha256", UNSIGNED_PAYLOAD),
        ]
        return "\n".join(lines), ";".join(names)

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        *,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """The headers to add to a request so that it is authenticated.

        Args:
            method: The HTTP method.
            host: The ``Host`` header the request will carry (with ``:port`` if not default).
            path: The request path, percent-encoded, starting with ``/``.
            query: The query string (without ``?``), or empty.
            headers: The request's other headers; its ``x-goog-*`` ones are signed.
            now: The signing time (default: now).

        Returns:
            ``host``, the date and payload-hash headers and ``authorization``.
        """
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        stamp = moment.strftime("%Y%m%dT%H%M%SZ")
        prefix = self.header_prefix
        added = {
            "host": host,
            f"{prefix}date": stamp,
            f"{prefix}content-sha256": UNSIGNED_PAYLOAD,
        }
        to_sign = {
            name.lower(): value
            for name, value in (headers or {}).items()
            if name.lower().startswith(prefix)
        }
        to_sign.update(added)
        canonical, signed_names = self.canonical_request(method, path, query, to_sign)
        scope = self.scope(stamp[:8])
        string_to_sign = "\n".join(
            [self.algorithm, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        signature = hmac.new(
            self.signing_key(stamp[:8]), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        authorization = (
            f"{self.algorithm} Credential={self.access_id}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return {**added, "authorization": authorization}

    def presign(
        self,
        method: str,
        host: str,
        path: str,
        query: str = "",
        *,
        expires: int = 300,
        now: datetime | None = None,
    ) -> str:
        """The query string of a signed URL: ``query`` plus the signature parameters.

        The query-string form of the same algorithm (Google's "signed URL", AWS's
        "presigned URL"): ``X-Goog-Algorithm``, ``X-Goog-Credential``, ``X-Goog-Date``,
        ``X-Goog-Expires``, ``X-Goog-SignedHeaders=host`` and ``X-Goog-Signature`` (``X-Amz-*``
        with ``scheme="AWS4"``). Only ``host`` is signed, so the request carries no
        ``x-goog-*`` header and any other header may be added on the way.

        Args:
            method: The HTTP method.
            host: The ``Host`` header the request will carry (with ``:port`` if not default).
            path: The request path, percent-encoded, starting with ``/``.
            query: The request's own query string (without ``?``), or empty.
            expires: Seconds the URL stays valid (1 to 604800).
            now: The signing time (default: now).

        Returns:
            The query string to send (``query``'s pairs, then the signature's).
        """
        if not 1 <= expires <= 604800:
            raise ValueError("expires must be 1 to 604800 seconds")
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        stamp = moment.strftime("%Y%m%dT%H%M%SZ")
        name = "X-Goog-" if self.scheme == "GOOG4" else "X-Amz-"
        scope = self.scope(stamp[:8])
        params = [
            (f"{name}Algorithm", self.algorithm),
            (f"{name}Credential", f"{self.access_id}/{scope}"),
            (f"{name}Date", stamp),
            (f"{name}Expires", str(expires)),
            (f"{name}SignedHeaders", "host"),
        ]
        added = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in params)
        full = f"{query}&{added}" if query else added
        lines = [
            method.upper(),
            canonical_path(path),
            canonical_query(full),
            f"host:{host}\n",
            "host",
            UNSIGNED_PAYLOAD,
        ]
        string_to_sign = "\n".join(
            [
                self.algorithm,
                stamp,
                scope,
                hashlib.sha256("\n".join(lines).encode()).hexdigest(),
            ]
        )
        signature = hmac.new(
            self.signing_key(stamp[:8]), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        return f"{full}&{name}Signature={signature}"


# --- error translation ----------------------------------------------------------------------


def _loaded(name: str) -> Any:
    """A module if it is already imported, else None (an exception from a module that was
    never imported cannot be an instance of its classes, and the edge stays lean)."""
    return sys.modules.get(name)


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None)
    return retry_after_seconds(headers.get("retry-after") if headers is not None else None)


def _status_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unknown status"


def _origin_error(exc: BaseException, what: str) -> OriginError | None:
    """The :mod:`backorigin.errors` exception for an SDK or transport failure, or None.

    This is the adapter's only translation of foreign exceptions. Messages name the status
    and the exception class, never the SDK's text (it can carry URLs and server bodies).
    None means the exception is not an origin failure (a bug): the caller re-raises it.
    """
    api = _loaded("google.api_core.exceptions")
    auth = _loaded("google.auth.exceptions")
    media = _loaded("google.cloud.storage.exceptions")
    requests_exc = _loaded("requests.exceptions")
    urllib3_exc = _loaded("urllib3.exceptions")
    kind = type(exc).__name__

    if api is not None and isinstance(exc, api.RetryError):
        cause = exc.cause
        inner = _origin_error(cause, what) if isinstance(cause, BaseException) else None
        retry_after = inner.retry_after if isinstance(inner, TransientOriginError) else None
        detail = f" (last: {inner})" if inner is not None else ""
        return TransientOriginError(
            f"{what}: still failing when the retry time ran out{detail}", retry_after=retry_after
        )

    status: int | None = None
    response: Any = None
    if api is not None and isinstance(exc, api.GoogleAPICallError):
        status = exc.code if isinstance(exc.code, int) else None
        response = exc.response
    elif media is not None and isinstance(exc, media.InvalidResponse):
        response = exc.response
        status = getattr(response, "status_code", None)
    if status is not None:
        message = f"{what}: HTTP {status} {_status_name(status)} ({kind})"
        if status in (404, 410):
            return ObjectNotFound(message)
        if status == 401:
            return Unauthenticated(message)
        if status == 403:
            return PermissionDenied(message)
        if status in (304, 412):
            return PreconditionFailed(f"{what}: the object changed (HTTP {status})")
        if status == 416:
            return InvalidRange(message)
        if status in (408, 429) or 500 <= status <= 599:
            return TransientOriginError(message, retry_after=_retry_after(response))
        return OriginError(message)
    if api is not None and isinstance(exc, api.GoogleAPICallError):
        return OriginError(f"{what}: {kind}")

    if media is not None and isinstance(exc, media.DataCorruption):
        return TransientOriginError(f"{what}: the download failed its checksum ({kind})")
    if auth is not None:
        if isinstance(exc, auth.TransportError):
            return TransientOriginError(f"{what}: cannot reach the token endpoint ({kind})")
        if isinstance(exc, auth.RefreshError) and getattr(exc, "retryable", False):
            return TransientOriginError(f"{what}: minting an access token failed ({kind})")
        if isinstance(exc, auth.DefaultCredentialsError):
            return Unauthenticated(f"{what}: no Application Default Credentials ({kind})")
        if isinstance(exc, auth.GoogleAuthError):
            # RefreshError (the token endpoint refused the key), InvalidOperation (a 401
            # answered to anonymous credentials, which cannot be refreshed), ...
            return Unauthenticated(f"{what}: the credentials were refused ({kind})")
    transport: tuple[type[BaseException], ...] = (OSError,)
    if requests_exc is not None:
        transport += (requests_exc.RequestException,)
    if urllib3_exc is not None:
        transport += (urllib3_exc.HTTPError,)
    http_client = _loaded("http.client")
    if http_client is not None:
        transport += (http_client.HTTPException,)
    if isinstance(exc, transport):
        return TransientOriginError(f"{what}: connection failed ({kind})")
    if isinstance(exc, ET.ParseError):
        return OriginError(f"{what}: the answer is not valid XML")
    return None


@contextlib.contextmanager
def _translating(what: str) -> Iterator[None]:
    """Re-raise SDK and transport exceptions as :mod:`backorigin.errors` ones."""
    try:
        yield
    except BackoriginError:
        raise
    except Exception as exc:
        error = _origin_error(exc, what)
        if error is None:
            raise
        raise error from exc


def _translated(items: Iterator[_T], what: str) -> Generator[_T]:
    """``items``, with failures while iterating translated like :func:`_translating`."""
    with _translating(what):
        yield from items


# --- metadata --------------------------------------------------------------------------------


def _digest(value: str | None, size: int) -> bytes | None:
    if not value:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


def _encoding(value: str | None) -> str | None:
    # The XML API states "identity" for objects stored without an encoding.
    return None if not value or value.lower() == "identity" else value


def _iso_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse_goog_hash(value: str | None) -> Checksums:
    """``x-goog-hash`` (``crc32c=B64,md5=B64``; repeated headers arrive comma-joined)."""
    found: dict[str, bytes] = {}
    for member in (value or "").split(","):
        name, _, encoded = member.strip().partition("=")
        name = name.strip().lower()
        size = {"crc32c": 4, "md5": 16}.get(name)
        raw = _digest(encoded, size) if size else None
        if raw is not None:
            found.setdefault(name, raw)
    return Checksums(**found)


def _info_from_blob(name: str, blob: Any) -> ObjectInfo:
    """ObjectInfo from a google-cloud-storage ``Blob`` resource (JSON API)."""
    generation = blob.generation
    metadata = {str(k).lower(): str(v) for k, v in (blob.metadata or {}).items()}
    return ObjectInfo(
        key=name,
        size=int(blob.size or 0),
        etag=blob.etag,
        version=str(generation) if generation is not None else None,
        last_modified=blob.updated,
        content_type=blob.content_type,
        content_encoding=_encoding(blob.content_encoding),
        cache_control=blob.cache_control,
        content_disposition=blob.content_disposition,
        content_language=blob.content_language,
        metadata=MappingProxyType(metadata),
        # crc32c is stated for every object; md5 is missing for composite objects.
        checksums=Checksums(crc32c=_digest(blob.crc32c, 4), md5=_digest(blob.md5_hash, 16)),
    )


def _info_from_headers(name: str, headers: Mapping[str, str]) -> ObjectInfo:
    """ObjectInfo from the headers of an XML API HEAD answer."""
    meta_prefix = "x-goog-meta-"
    metadata = {
        header.lower()[len(meta_prefix) :]: value
        for header, value in headers.items()
        if header.lower().startswith(meta_prefix) and len(header) > len(meta_prefix)
    }
    length = headers.get("x-goog-stored-content-length") or headers.get("content-length")
    return ObjectInfo(
        key=name,
        size=int(length or 0),
        etag=headers.get("etag"),
        version=headers.get("x-goog-generation"),
        last_modified=http_date(headers.get("last-modified")),
        content_type=headers.get("content-type"),
        content_encoding=_encoding(
            headers.get("x-goog-stored-content-encoding") or headers.get("content-encoding")
        ),
        cache_control=headers.get("cache-control"),
        content_disposition=headers.get("content-disposition"),
        content_language=headers.get("content-language"),
        expires=headers.get("expires"),
        metadata=MappingProxyType(metadata),
        checksums=_parse_goog_hash(headers.get("x-goog-hash")),
    )


def _changed(what: str, wanted: str, served: object) -> PreconditionFailed:
    return PreconditionFailed(
        f"{what}: the object changed (generation {served}, the read is pinned to {wanted})"
    )


# --- the two APIs -----------------------------------------------------------------------------


class _JsonApi:
    """Reads through google-cloud-storage (anonymous and service-account modes)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        retry: Callable[[], Any] | None,
        timeout: tuple[float, float],
        chunk_size: int,
        page_size: int,
        before_call: Callable[[], None],
    ) -> None:
        self._client = client
        self._bucket = client.bucket(bucket)
        self._retry = retry
        self._timeout = timeout
        self._chunk_size = chunk_size
        self._page_size = page_size
        self._before_call = before_call

    def _new_retry(self) -> Any:
        """A fresh Retry for one call (each counts its own retries), or None: no retries."""
        return self._retry() if self._retry is not None else None

    def stat(self, name: str, pin: str | None) -> ObjectInfo:
        blob = self._bucket.blob(name)
        self._before_call()
        blob.reload(
            if_generation_match=int(pin) if pin is not None else None,
            retry=self._new_retry(),
            timeout=self._timeout,
        )
        return _info_from_blob(name, blob)

    def chunks(
        self, name: str, generation: str, start: int, stop: int, what: str
    ) -> Iterator[bytes]:
        position = start
        while position < stop:
            end = min(position + self._chunk_size, stop)
            # A fresh Blob each time: one that has served a chunk knows its generation and
            # would ask for "generation=G" explicitly, so a replaced object would answer 404
            # (or, in a versioned bucket, the old bytes) instead of 412.
            blob = self._bucket.blob(name)
            self._before_call()
            data = blob.download_as_bytes(
                start=position,
                end=end - 1,
                raw_download=True,  # never decompress: bytes are copied as stored
                if_generation_match=int(generation),
                checksum=None,  # ranged: the SDK could not check it; the copy engine does
                retry=self._new_retry(),
                timeout=self._timeout,
            )
            # The SDK records the generation the server says it served; a server that
            # ignores ifGenerationMatch is caught here, before the bytes are handed out.
            served = blob.generation
            if served is not None and str(served) != generation:
                raise _changed(what, generation, served)
            if not data or len(data) > end - position:
                raise TransientOriginError(
                    f"{what}: asked for bytes {position}-{end - 1}, got {len(data)} bytes"
                )
            position += len(data)
            yield data

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._before_call()
        blobs = self._client.list_blobs(
            self._bucket,
            prefix=prefix or None,
            page_size=self._page_size,
            retry=self._new_retry(),
            timeout=self._timeout,
        )
        for blob in blobs:
            yield _info_from_blob(blob.name, blob)

    def close(self) -> None:
        self._client.close()


class _XmlApi:
    """Reads through the XML API with urllib3, every request V4-signed (hmac mode)."""

    def __init__(
        self,
        spec: OriginSpec,
        signer: Callable[[], V4Signer],
        *,
        retry: Callable[[], Any] | None,
        timeout: tuple[float, float],
        chunk_size: int,
        page_size: int,
    ) -> None:
        urllib3 = require("urllib3", "gcs")
        self._api = require("google.api_core.exceptions", "gcs")
        self._pool = urllib3.PoolManager(
            maxsize=_POOL_SIZE,
            retries=False,  # retries belong to the SDK's Retry, which wraps each request
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
        )
        self._host = _host_header(spec)
        self._origin = f"{spec.protocol}://{self._host}"
        self._bucket_path = spec.path
        self._signer = signer
        self._retry = retry
        self._chunk_size = chunk_size
        self._page_size = page_size

    def _request(self, method: str, path: str, query: str, headers: Mapping[str, str]) -> Any:
        """Send one signed request (retried by the SDK's Retry); the body is left unread.

        Answers other than 2xx are raised as ``google.api_core`` exceptions, the same kind
        the JSON API raises, so one retry predicate and one translation serve both.
        """

        def attempt() -> Any:
            signed = {**headers, **self._signer().sign(method, self._host, path, query, headers)}
            url = self._origin + canonical_path(path)
            if query:
                url += "?" + canonical_query(query)
            response = self._pool.request(
                method,
                url,
                headers=signed,
                redirect=False,
                preload_content=False,
                decode_content=False,
            )
            if 200 <= response.status < 300:
                return response
            try:
                response.read(_ERROR_BODY_LIMIT, decode_content=False)
            finally:
                response.release_conn()
            raise self._api.from_http_status(
                response.status, f"{method} {path}: HTTP {response.status}", response=response
            )

        return self._retry()(attempt)() if self._retry is not None else attempt()

    def _object_path(self, name: str) -> str:
        return self._bucket_path + "/" + quote(name, safe="/")

    def stat(self, name: str, pin: str | None) -> ObjectInfo:
        # Accept-Encoding: gzip stops decompressive transcoding, so the stored size is stated.
        headers = {"accept-encoding": "gzip"}
        if pin is not None:
            headers["x-goog-if-generation-match"] = pin
        response = self._request("HEAD", self._object_path(name), "", headers)
        response.release_conn()
        return _info_from_headers(name, response.headers)

    def chunks(
        self, name: str, generation: str, start: int, stop: int, what: str
    ) -> Iterator[bytes]:
        headers = {
            "accept-encoding": "gzip",
            "x-goog-if-generation-match": generation,
            "range": f"bytes={start}-{stop - 1}",
        }
        response = self._request("GET", self._object_path(name), "", headers)
        complete = False
        try:
            served = response.headers.get("x-goog-generation")
            if served is not None and served != generation:
                raise _changed(what, generation, served)
            if response.status == 200 and start != 0:
                raise OriginError(f"{what}: the server ignored the Range header")
            want = stop - start
            received = 0
            for chunk in response.stream(self._chunk_size, decode_content=False):
                chunk = chunk[: want - received]
                if chunk:
                    received += len(chunk)
                    yield chunk
                if received >= want:
                    break
            if received < want:
                raise TransientOriginError(
                    f"{what}: the body ended after {received} of {want} bytes"
                )
            complete = response.length_remaining in (0, None)
        finally:
            if not complete:
                response.close()  # an unread rest would poison the pooled connection
            response.release_conn()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        token: str | None = None
        after: str | None = None
        while True:
            params = {"list-type": "2", "max-keys": str(self._page_size), "prefix": prefix}
            if token:
                params["continuation-token"] = token
            elif after:
                params["start-after"] = after
            query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in params.items())
            response = self._request("GET", self._bucket_path, query, {})
            try:
                body = response.read(decode_content=True)
            finally:
                response.release_conn()
            root = ET.fromstring(body)  # noqa: S314 - the origin's own listing, bounded by the page size
            last = None
            for element in root:
                if _local(element.tag) != "Contents":
                    continue
                fields = {_local(child.tag): child.text or "" for child in element}
                last = fields.get("Key", "")
                yield ObjectInfo(
                    key=last,
                    size=int(fields.get("Size") or 0),
                    etag=fields.get("ETag") or None,
                    version=fields.get("Generation") or None,
                    last_modified=_iso_date(fields.get("LastModified")),
                )
            truncated = _child_text(root, "IsTruncated").lower() == "true"
            token = _child_text(root, "NextContinuationToken") or None
            after = last
            if not truncated or (token is None and last is None):
                return

    def close(self) -> None:
        self._pool.clear()


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child_text(root: ET.Element, name: str) -> str:
    for element in root:
        if _local(element.tag) == name:
            return (element.text or "").strip()
    return ""


def _host_header(spec: OriginSpec) -> str:
    default = 443 if spec.protocol == "https" else 80
    return spec.domain if spec.port == default else f"{spec.domain}:{spec.port}"


# --- the adapter ------------------------------------------------------------------------------


EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
"""The variable google-cloud-storage (and gcloud, and fake-gcs-server's docs) read an emulator's
URL from, e.g. ``http://127.0.0.1:4443``; a bare ``host:port`` is taken as http."""


class GcsAdapter(OriginAdapter[GcsOrigin]):
    """Reads a Google Cloud Storage bucket and tells CloudFront how to reach it.

    Where each auth mode works:

    * ``anonymous``: copy path and edge (requests go out unsigned);
    * ``service_account`` with a key: copy path and edge (``Authorization: Bearer``, the
      token minted from the key by google-auth and cached until shortly before expiry);
      without a key (Application Default Credentials): copy path only;
    * ``hmac``: copy path (``GOOG4-HMAC-SHA256`` signed headers, XML API) and edge (the
      same signature in the query string: a signed URL, no ``x-goog-*`` header).

    A key rotated in its secret takes effect when the adapter is built again (a new
    Lambda container); HMAC secrets are re-read through the resolver's cache.

    Args:
        config: The origin's validated config.
        secrets: Resolves the config's secret references.
        chunk_size: Bytes per ranged request (JSON API) or per yielded chunk (XML API).
        page_size: Objects per listing request.
    """

    config_model: ClassVar[type[GcsOrigin]] = GcsOrigin
    EDGE_URL_SECONDS: ClassVar[int] = 300
    """How long a signed URL made at the edge (hmac) stays valid: CloudFront sends it at once."""

    @classmethod
    def deployment(cls, config: GcsOrigin, role: FunctionRole) -> DeploymentNeeds:
        """The ``gcs`` extra for the fetcher; at the edge, google-auth for a service account.

        The edge signs HMAC requests with the standard library and sends anonymous ones
        as they are; only minting a service account's token needs google-auth there.
        """
        if role == "fetcher":
            return DeploymentNeeds(packages=extra_requirements("gcs"))
        if isinstance(config.auth, GcsServiceAccountAuth):
            return DeploymentNeeds(packages=extra_requirements("gcs", "google-auth"))
        return DeploymentNeeds()

    def __init__(
        self,
        config: GcsOrigin,
        *,
        secrets: SecretResolver | None = None,
        chunk_size: int = CHUNK_SIZE,
        page_size: int = PAGE_SIZE,
    ) -> None:
        super().__init__(config, secrets=secrets)
        if chunk_size <= 0 or page_size <= 0:
            raise ValueError("chunk_size and page_size must be positive")
        self.chunk_size = chunk_size
        self.page_size = page_size
        self._lock = threading.Lock()
        self._token_lock = threading.Lock()
        self._api: _JsonApi | _XmlApi | None = None
        self._credentials: tuple[Any, str | None] | None = None
        self._auth_request: Any = None

    # --- data plane -------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key``: size, generation, checksums (crc32c; md5 when stated), ..."""
        name = self._name(key)
        what = f"HEAD {key!r} at origin {self.name!r}"
        with _translating(what):
            return self._data().stat(name, None).with_key(key)

    def read(  # type: ignore[override]  # the old primitive, until get_once replaces it
        self, key: str, range: ByteRange | None = None, version: str | None = None
    ) -> ObjectStream:
        """Stream ``key`` (or ``range`` of it), raw, pinned to one generation.

        The object's metadata is read first (pinned to ``version`` if given), which settles
        not-found, a changed version and an unsatisfiable range before this returns; the
        bytes then come in ranged requests pinned to that generation.
        """
        name = self._name(key)
        what = f"GET {key!r}{f' ({range})' if range else ''} at origin {self.name!r}"
        if version is not None and not version.isdigit():
            raise ValueError(f"{version!r} is not a GCS generation")
        with _translating(what):
            api = self._data()
            info = api.stat(name, version)
        generation = info.version
        if version is not None and generation != version:
            raise _changed(what, version, generation)
        if generation is None:
            raise OriginError(f"{what}: the server states no generation")
        start, stop = range.resolve(info.size) if range is not None else (0, info.size)
        if start >= stop:  # an empty object read whole: no request to make
            return _translated(iter(()), what)
        return _translated(api.chunks(name, generation, start, stop, what), what)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under the configured prefix + ``prefix``, paged lazily."""
        base = self.config.prefix
        what = f"LIST {prefix!r} at origin {self.name!r}"

        def listing() -> Iterator[ObjectInfo]:
            for info in self._data().list(base + prefix):
                if info.key.startswith(base):
                    yield info.with_key(info.key[len(base) :])

        return _translated(listing(), what)

    def close(self) -> None:
        """Close the SDK client's or the XML API's pooled connections."""
        with self._lock:
            api, self._api = self._api, None
            request, self._auth_request = self._auth_request, None
        if api is not None:
            api.close()
        if request is not None:
            request.http.clear()

    @classmethod
    def environment_endpoint(
        cls, config: OriginConfig, environ: Mapping[str, str]
    ) -> tuple[str, str] | None:
        """``STORAGE_EMULATOR_HOST``, as google-cloud-storage reads it, when no endpoint is set."""
        value = environ.get(EMULATOR_ENV, "").strip()
        if getattr(config, "endpoint_url", None) is not None or not value:
            return None
        return EMULATOR_ENV, value if "://" in value else "http://" + value

    # --- edge plane -------------------------------------------------------------------------

    def cloudfront_origin(self) -> OriginSpec:
        """``storage.googleapis.com`` with origin path ``/BUCKET`` (or the endpoint's)."""
        bucket_path = "/" + self.config.bucket
        if self.config.endpoint_url is None:
            return OriginSpec(domain=STORAGE_HOST, path=bucket_path, protocol="https", port=443)
        parts = urlsplit(self.config.endpoint_url)
        protocol: Literal["https", "http"] = "https" if parts.scheme == "https" else "http"
        return OriginSpec(
            domain=parts.hostname or "",
            path=parts.path.rstrip("/") + bucket_path,
            protocol=protocol,
            port=parts.port or (443 if protocol == "https" else 80),
        )

    def sign(self, request: OriginRequest) -> OriginRequest:
        """Authenticate CloudFront's request to the XML API.

        CloudFront adds ``X-Amz-Cf-Id`` to every origin request after this function has run,
        and Cloud Storage refuses a request that carries ``x-amz-*`` and ``x-goog-*`` headers
        together ("Requests cannot specify both x-amz and x-goog headers"). So no mode sends
        an ``x-goog-*`` header, and the viewer's own ``x-goog-*`` / ``x-amz-*`` headers (and
        ``authorization``) are dropped; the returned headers are the whole set to send.

        anonymous: nothing added. service_account: ``Authorization: Bearer <token>``.
        hmac: a signed URL: the ``GOOG4-HMAC-SHA256`` signature goes in the query string
        (:meth:`V4Signer.presign`, ``host`` signed, valid for :attr:`EDGE_URL_SECONDS`),
        where the header form would have needed ``x-goog-date`` and
        ``x-goog-content-sha256``. The URI is returned in the canonical encoding that was
        signed, so what CloudFront sends is exactly what was signed.
        """
        kept = {
            name: value
            for name, value in request.headers.items()
            if not name.startswith(("x-goog-", "x-amz-")) and name != "authorization"
        }
        request = replace(request, headers=MappingProxyType(kept))
        auth = self.config.auth
        if isinstance(auth, GcsServiceAccountAuth):
            token = self._access_token(f"signing for origin {self.name!r}")
            return request.with_headers({"authorization": f"Bearer {token}"})
        if isinstance(auth, GcsHmacAuth):
            spec = self.cloudfront_origin()
            uri = canonical_path(request.uri)
            query = self._signer().presign(
                request.method,
                _host_header(spec),
                spec.path + uri,
                request.querystring,
                expires=self.EDGE_URL_SECONDS,
            )
            return replace(request, uri=uri, querystring=query)
        return request

    # --- internals --------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return validate_key(self.config.prefix + key)

    def _timeout(self) -> tuple[float, float]:
        return (float(self.config.connect_timeout), float(self.config.read_timeout))

    def _retry(self) -> Callable[[], Any] | None:
        """A maker of google-cloud-storage's DEFAULT_RETRY (429, 5xx, timeouts, resets), configured.

        The SDK's Retry bounds retrying by time only; ``retries`` is a count, so each call
        gets its own Retry whose predicate allows that many retries and then lets the last
        error through as it is.
        """
        retries = self.config.retries
        if retries <= 0:
            return None
        module = require("google.cloud.storage.retry", "gcs")
        backoff = float(self.config.backoff)
        base = module.DEFAULT_RETRY.with_timeout(None).with_delay(
            initial=backoff, maximum=max(backoff, 32.0), multiplier=2.0
        )
        retryable: Callable[[Exception], bool] = base._predicate

        def make() -> Any:
            left = retries

            def predicate(exc: Exception) -> bool:
                nonlocal left
                if not retryable(exc) or left <= 0:
                    return False
                left -= 1
                return True

            return base.with_predicate(predicate)

        return make

    def _data(self) -> _JsonApi | _XmlApi:
        with self._lock:
            if self._api is None:
                self._api = self._build_api()
            return self._api

    def _build_api(self) -> _JsonApi | _XmlApi:
        auth = self.config.auth
        if isinstance(auth, GcsHmacAuth):
            return _XmlApi(
                self.cloudfront_origin(),
                self._signer,
                retry=self._retry(),
                timeout=self._timeout(),
                chunk_size=self.chunk_size,
                page_size=self.page_size,
            )
        storage = require("google.cloud.storage", "gcs")
        if isinstance(auth, GcsServiceAccountAuth):
            credentials, project = self._google_credentials()
            before_call: Callable[[], None] = self._refresh_for_data_plane
        else:
            credentials_module = require("google.auth.credentials", "gcs")
            credentials, project = credentials_module.AnonymousCredentials(), None
            before_call = _nothing
        endpoint = self.config.endpoint_url
        options = {"api_endpoint": endpoint.rstrip("/")} if endpoint else None
        client = storage.Client(
            # The project only matters for creating buckets; a placeholder keeps the SDK from
            # probing the environment (and the metadata server) for one.
            project=self.config.project or project or "<none>",
            credentials=credentials,
            client_options=options,
        )
        # google-cloud-storage >= 3.x fetches the bucket's metadata in a background thread on
        # first use, to label OpenTelemetry spans. That is an extra request per client which
        # needs storage.buckets.get (a read-only object viewer lacks it) and nothing here
        # uses; the SDK skips it when its cache is unset.
        if getattr(client, "_bucket_metadata_cache", None) is not None:
            client._bucket_metadata_cache = None
        return _JsonApi(
            client,
            self.config.bucket,
            retry=self._retry(),
            timeout=self._timeout(),
            chunk_size=self.chunk_size,
            page_size=self.page_size,
            before_call=before_call,
        )

    def _google_credentials(self) -> tuple[Any, str | None]:
        """The service account's google-auth credentials (built once) and its project."""
        auth = self.config.auth
        assert isinstance(auth, GcsServiceAccountAuth)
        with self._token_lock:
            if self._credentials is not None:
                return self._credentials
            if auth.credentials is None:
                google_auth = require("google.auth", "gcs")
                with _translating(f"loading credentials for origin {self.name!r}"):
                    credentials, project = google_auth.default(scopes=[READ_ONLY_SCOPE])
            else:
                where = auth.credentials.secret.describe()
                text = self.secrets.resolve(auth.credentials).get_secret_value()
                try:
                    info = json.loads(text)
                except ValueError:
                    # from None: the decode error keeps the whole document (the key) in .doc
                    raise Unauthenticated(
                        f"the service account key in {where} is not JSON"
                    ) from None
                if not isinstance(info, dict):
                    raise Unauthenticated(f"the service account key in {where} is not an object")
                service_account = require("google.oauth2.service_account", "gcs")
                try:
                    credentials = service_account.Credentials.from_service_account_info(
                        info, scopes=[READ_ONLY_SCOPE]
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    raise Unauthenticated(
                        f"the service account key in {where} is unusable ({type(exc).__name__})"
                    ) from None
                project = info.get("project_id")
            self._credentials = (credentials, project if isinstance(project, str) else None)
            return self._credentials

    def _access_token(self, what: str) -> str:
        """A valid access token, minted again only when google-auth deems it stale.

        google-auth treats a token as stale within its refresh threshold (a few minutes)
        before the expiry the token endpoint stated; until then every caller reuses it.
        """
        credentials, _ = self._google_credentials()
        token_state = require("google.auth.credentials", "gcs").TokenState
        with self._token_lock:
            if credentials.token_state is not token_state.FRESH:
                with _translating(f"{what}: minting an access token"):
                    credentials.refresh(self._token_request())
            return str(credentials.token)

    def _refresh_for_data_plane(self) -> None:
        # Refreshing here, under the lock, keeps the SDK's session from refreshing the
        # shared credentials concurrently on its own.
        self._access_token(f"origin {self.name!r}")

    def _token_request(self) -> Any:
        if self._auth_request is None:
            urllib3 = require("urllib3", "gcs")
            transport = require("google.auth.transport.urllib3", "gcs")
            timeout = urllib3.Timeout(
                connect=float(self.config.connect_timeout), read=float(self.config.read_timeout)
            )
            self._auth_request = transport.Request(urllib3.PoolManager(timeout=timeout))
        return self._auth_request

    def _signer(self) -> V4Signer:
        auth = self.config.auth
        assert isinstance(auth, GcsHmacAuth)
        return V4Signer(
            access_id=self.secrets.resolve(auth.access_id).get_secret_value(),
            secret=self.secrets.resolve(auth.secret),
        )


def _nothing() -> None:
    return None
