"""The GCS adapter's API clients: the XML API (every read, hmac listings) and the JSON API
(listings with google-cloud-storage), and the metadata both describe objects with."""

from __future__ import annotations

__all__ = ["Authorize", "JsonApi", "XmlApi", "host_header", "info_from_blob", "xml_etag"]

import base64
import binascii
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from backorigin.adapters.base import require
from backorigin.adapters.gcs.errors import translating
from backorigin.adapters.gcs.signing import _encode, canonical_path, canonical_query
from backorigin.adapters.headers import http_date
from backorigin.adapters.read import RawGet, content_range
from backorigin.errors import OriginError, TransientOriginError
from backorigin.types import Checksums, GetOptions, ObjectInfo, OriginSpec

_POOL_SIZE = 32  # connections kept per host; the copy engine reads ranges in parallel
_ERROR_BODY_LIMIT = 64 * 1024  # error bodies are read (to keep the connection) up to this


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


def xml_etag(md5: bytes | None, component_count: object = None) -> str | None:
    """The ETag the XML API (and so CloudFront) serves for an object the JSON API describes.

    The two APIs state different ETags for the same object. The XML API's is the quoted hex
    MD5 of a non-composite object; a composite object has no MD5, and what the XML API serves
    for it cannot be derived from the JSON resource, so it is left unknown (None).
    """
    if md5 is None or component_count:
        return None
    return f'"{md5.hex()}"'


def info_from_blob(name: str, blob: Any) -> ObjectInfo:
    """ObjectInfo from a google-cloud-storage ``Blob`` resource (JSON API)."""
    generation = blob.generation
    metadata = {str(k).lower(): str(v) for k, v in (blob.metadata or {}).items()}
    md5 = _digest(blob.md5_hash, 16)
    return ObjectInfo(
        key=name,
        size=int(blob.size or 0),
        etag=xml_etag(md5, blob.component_count),
        version=str(generation) if generation is not None else None,
        last_modified=blob.updated,
        content_type=blob.content_type,
        content_encoding=_encoding(blob.content_encoding),
        cache_control=blob.cache_control,
        content_disposition=blob.content_disposition,
        content_language=blob.content_language,
        metadata=MappingProxyType(metadata),
        # crc32c is stated for every object; md5 is missing for composite objects.
        checksums=Checksums(crc32c=_digest(blob.crc32c, 4), md5=md5),
    )


def info_from_headers(name: str, headers: Mapping[str, str]) -> ObjectInfo:
    """ObjectInfo from the headers of an XML API HEAD or GET answer (the size of a ranged
    answer is the caller's to correct, from its ``Content-Range``)."""
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


# --- the two APIs -----------------------------------------------------------------------------


Authorize = Callable[[str, str, str, Mapping[str, str]], Mapping[str, str]]
"""(method, path, query, headers) → the headers that authenticate the request."""


class JsonApi:
    """Lists through google-cloud-storage (anonymous and service-account modes)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        retry: Callable[[], Any] | None,
        timeout: tuple[float, float],
        page_size: int,
        before_call: Callable[[], None],
    ) -> None:
        self._client = client
        self._bucket = client.bucket(bucket)
        self._retry = retry
        self._timeout = timeout
        self._page_size = page_size
        self._before_call = before_call

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._before_call()
        blobs = self._client.list_blobs(
            self._bucket,
            prefix=prefix or None,
            page_size=self._page_size,
            retry=self._retry() if self._retry is not None else None,
            timeout=self._timeout,
        )
        for blob in blobs:
            yield info_from_blob(blob.name, blob)

    def close(self) -> None:
        self._client.close()


class XmlApi:
    """Reads through the XML API with urllib3: what CloudFront reads, so what it serves.

    Every mode reads objects here (``authorize`` adds a V4 signature, a bearer token or
    nothing), which is how the metadata a read records (the ETag above all) is the one
    viewers see at the edge; hmac mode lists here too.
    """

    def __init__(
        self,
        spec: OriginSpec,
        authorize: Authorize,
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
        self._host = host_header(spec)
        self._origin = f"{spec.protocol}://{self._host}"
        self._bucket_path = spec.path
        self._authorize = authorize
        self._retry = retry
        self._chunk_size = chunk_size
        self._page_size = page_size

    def _request(self, method: str, path: str, query: str, headers: Mapping[str, str]) -> Any:
        """Send one authorized request (retried by the SDK's Retry); the body is left unread.

        Answers other than 2xx are raised as ``google.api_core`` exceptions, the same kind
        the JSON API raises, so one retry predicate and one translation serve both.
        """

        def attempt() -> Any:
            signed = {**headers, **self._authorize(method, path, query, headers)}
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

    def stat(self, name: str, key: str) -> ObjectInfo:
        """HEAD ``name``: its metadata as the XML API serves it."""
        # Accept-Encoding: gzip stops decompressive transcoding, so the stored size is stated.
        response = self._request("HEAD", self._object_path(name), "", {"accept-encoding": "gzip"})
        response.release_conn()
        return info_from_headers(key, response.headers)

    def get_once(self, name: str, key: str, options: GetOptions, what: str) -> RawGet:
        """One GET of ``name``, ranged, pinned to the generation of ``options``' pin."""
        headers = {"accept-encoding": "gzip"}
        generation = options.pin.version if options.pin is not None else options.version
        if generation is not None:
            if not generation.isdigit():
                raise ValueError(f"{generation!r} is not a GCS generation")
            headers["x-goog-if-generation-match"] = generation
        if options.if_match is not None:
            headers["if-match"] = options.if_match
        if options.range is not None:
            headers["range"] = options.range.header()
        response = self._request("GET", self._object_path(name), "", headers)
        try:
            info = info_from_headers(key, response.headers)
            served: tuple[int, int] | None = None
            if response.status == 206:
                first, last, total = content_range(response.headers.get("content-range")) or (
                    None,
                    None,
                    None,
                )
                if first is None or last is None or total is None:
                    raise OriginError(f"{what}: a 206 answer without a usable Content-Range")
                info, served = replace(info, size=total), (first, last + 1)
        except BaseException:
            response.close()
            response.release_conn()
            raise
        return RawGet(body=_XmlBody(response, what, self._chunk_size), info=info, served=served)

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
                    etag=_quoted(fields.get("ETag") or None),
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


def _quoted(etag: str | None) -> str | None:
    # Listings may state ETags without the quotes HEAD and GET send; versions must compare.
    if etag is None or etag.startswith(('"', 'W/"')):
        return etag
    return f'"{etag}"'


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child_text(root: ET.Element, name: str) -> str:
    for element in root:
        if _local(element.tag) == name:
            return (element.text or "").strip()
    return ""


def host_header(spec: OriginSpec) -> str:
    """The ``Host`` header of requests to ``spec`` (with the port when not the default)."""
    default = 443 if spec.protocol == "https" else 80
    return spec.domain if spec.port == default else f"{spec.domain}:{spec.port}"


class _XmlBody:
    """One GET's body for the shared read path; the connection is kept for reuse only when
    the body was read to its end."""

    def __init__(self, response: Any, what: str, chunk_size: int) -> None:
        self._response: Any = response
        self._what = what
        self._chunk_size = chunk_size
        self._finished = False

    def readinto(self, buffer: memoryview) -> int:
        response = self._response
        if response is None:
            return 0
        with translating(self._what):
            # read1: what one receive brings, so a timeout loses nothing already received.
            chunk = response.read1(min(len(buffer), self._chunk_size), decode_content=False)
        if not chunk:
            remaining = response.length_remaining
            if remaining:
                raise TransientOriginError(
                    f"{self._what}: the body ended {remaining} bytes before its announced end"
                )
            self._finished = True
            return 0
        count = len(chunk)
        buffer[:count] = chunk
        return count

    def close(self) -> None:
        response, self._response = self._response, None
        if response is None:
            return
        if not (self._finished or response.length_remaining == 0):
            response.close()  # an unread rest would poison the pooled connection
        response.release_conn()
