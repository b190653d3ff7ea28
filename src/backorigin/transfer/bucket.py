"""The write side: the S3 bucket in front of the origins.

All boto3 calls of the copy engine go through :class:`Bucket`, and :func:`_translate` is the one
place that maps S3's errors. Every write that creates an object is conditional
(``If-None-Match: *``), so an object already in S3 is never overwritten. The only writes that
replace or remove an object (refreshing or deleting a copy the engine made) are conditional on
that object's ETag (``If-Match``), so an object written since it was examined — by the
application, say — is never clobbered.
"""

from __future__ import annotations

__all__ = [
    "Body",
    "Bucket",
    "BucketError",
    "Changed",
    "Conflict",
    "Exists",
    "ListedObject",
    "StoredObject",
    "make_s3_client",
]

import base64
import contextlib
import ipaddress
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from botocore.utils import determine_content_length

from backorigin.config.models import BucketConfig
from backorigin.errors import BackoriginError
from backorigin.transfer.buffers import Body
from backorigin.transfer.crt_put import CrtPutter

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any


class BucketError(BackoriginError):
    """An S3 request of the copy engine failed (after botocore's own retries)."""


class Exists(BucketError):
    """A conditional create found the object already there (HTTP 412)."""


class Changed(Exists):
    """A write or delete conditional on an object's ETag found another object (or none)."""


class Conflict(BucketError):
    """A concurrent conditional write on the same key (HTTP 409); retrying may succeed."""


class _Missing(BucketError):
    """The key or upload does not exist (404)."""


def _translate(operation: str, exc: Exception) -> BucketError:
    """Map a botocore failure to :class:`BucketError` and its kinds. The only such place."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = f"S3 {operation} failed: {code or status}"
        if status == 412 or code == "PreconditionFailed":
            return Exists(message)
        if status == 409 or code in ("ConditionalRequestConflict", "OperationAborted"):
            return Conflict(message)
        if status == 404 or code in ("NoSuchKey", "NoSuchUpload", "NotFound"):
            return _Missing(message)
        return BucketError(message)
    return BucketError(f"S3 {operation} failed: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def _replacing(key: str) -> Iterator[None]:
    """Report a failed ``If-Match`` as :class:`Changed`.

    S3 answers 412 when the ETag differs and, for a key that no longer exists, 412 or 404
    depending on the operation; either way the object examined is not there any more.
    """
    try:
        yield
    except (Exists, _Missing) as exc:
        raise Changed(f"{key} changed since it was examined; left alone") from exc


@contextlib.contextmanager
def _call(operation: str) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise _translate(operation, exc) from exc


def _sign_payloads(endpoint_url: str | None) -> bool:
    """Whether request bodies are hashed into the SigV4 signature (SHA-256 of every byte).

    Every body the engine sends carries a CRC32C in a signed header, which S3 checks against
    the bytes; what the payload hash adds is protection against someone *changing* the bytes
    on the way and fixing up the CRC. TLS already gives that, and so does a loopback
    connection (the bytes never leave the host), so the hash is left out there
    (``UNSIGNED-PAYLOAD``), as the AWS SDKs do over HTTPS. It costs about 1 CPU-second per
    GiB. Over plain HTTP to another host, bodies stay signed.
    """
    if endpoint_url is None:
        return False  # Amazon S3's own endpoints: HTTPS
    parsed = urlsplit(endpoint_url)
    if parsed.scheme == "https":
        return False
    host = parsed.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def make_s3_client(
    bucket: BucketConfig,
    *,
    max_pool_connections: int = 16,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
) -> S3Client:
    """A boto3 S3 client for the bucket: standard retries, pooled for parallel parts.

    Credentials (unless given) and, absent from the config, the region follow boto3's usual
    chain.
    """
    s3_options: Any = {"payload_signing_enabled": _sign_payloads(bucket.endpoint_url)}
    if bucket.endpoint_url:
        s3_options["addressing_style"] = "path"
    config = BotoConfig(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=max_pool_connections,
        connect_timeout=10,
        read_timeout=120,
        # We send our own checksums; S3-compatible servers vary in what else they accept.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3=s3_options,
    )
    client: S3Client = boto3.client(
        "s3",
        region_name=bucket.region or ("us-east-1" if bucket.endpoint_url else None),
        endpoint_url=bucket.endpoint_url,
        config=config,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
    )
    # After botocore's own handler, which asks every file-like body to wait for a
    # "100 Continue" (and PutObject turns a bytes body into a file first).
    client.meta.events.register_last("before-call.s3", _no_expect_for_small_bodies)
    return client


def _no_expect_for_small_bodies(params: dict[str, Any], **_: Any) -> None:
    """Send a body of at most :data:`_SMALL_BODY` bytes with its headers.

    ``Expect: 100-continue`` spares sending a body the server would refuse, at the price of
    one more round trip (and botocore reads the interim answer a byte per receive). For a
    small body that round trip costs more than the body: a refused one is simply sent for
    nothing, and the answer is the same.
    """
    headers = params.get("headers")
    if not headers or "Expect" not in headers:
        return
    size = determine_content_length(params.get("body"))
    if size is not None and size <= _SMALL_BODY:
        del headers["Expect"]


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What HEAD says about an object in the bucket."""

    size: int
    etag: str
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ListedObject:
    """What a bucket listing says about an object (no user metadata: listings carry none)."""

    key: str
    size: int
    etag: str
    last_modified: datetime | None


_SMALL_BODY = 1024 * 1024


def _body(data: bytes | bytearray | memoryview) -> bytes | IO[bytes]:
    """What botocore is given to send: ``data`` itself, or a file over it.

    botocore asks for ``Expect: 100-continue`` (one more round trip before the body) for
    every file-like body, so a small body goes as ``bytes``: copying it costs less.
    """
    if len(data) <= _SMALL_BODY:
        return data if isinstance(data, bytes) else bytes(data)
    return cast("IO[bytes]", Body(data))


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _parts(parts: Mapping[int, tuple[str, bytes | None]]) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = []
    for number in sorted(parts):
        etag, crc = parts[number]
        entry: dict[str, Any] = {"PartNumber": number, "ETag": etag}
        if crc is not None:
            entry["ChecksumCRC32C"] = _b64(crc)
        listed.append(entry)
    return listed


class Bucket:
    """The S3 operations of the copy engine, on one bucket."""

    def __init__(self, client: S3Client, name: str, *, crt_puts: bool = True) -> None:
        """Args:
        client: The boto3 client every request follows (endpoint, region, credentials).
        name: The bucket.
        crt_puts: Send single PutObject requests through the CRT's S3 client
            (:mod:`backorigin.transfer.crt_put`); otherwise, and for unsigned clients,
            through botocore.
        """
        self.client = client
        self.name = name
        self._crt_puts = crt_puts
        self._putter: CrtPutter | None = None
        self._putter_lock = threading.Lock()

    def _put(self, key: str, body: bytes | bytearray | memoryview, params: dict[str, Any]) -> str:
        """One PutObject; its ETag. The CRT sends it when it can, botocore otherwise."""
        putter = self._crt_putter()
        with _call("PutObject"):
            if putter is not None:
                return putter.put(key, body, params)["etag"]
            response = self.client.put_object(Bucket=self.name, Key=key, Body=_body(body), **params)
        return str(response["ETag"])

    def _crt_putter(self) -> CrtPutter | None:
        if not self._crt_puts:
            return None
        with self._putter_lock:
            if self._putter is None:
                self._putter = CrtPutter.for_client(self.client, self.name)
                self._crt_puts = self._putter is not None
            return self._putter

    # --- objects ------------------------------------------------------------------------------

    def head(self, key: str) -> StoredObject | None:
        """The object's size, ETag and user metadata; None when it does not exist."""
        try:
            with _call("HeadObject"):
                response = self.client.head_object(Bucket=self.name, Key=key)
        except _Missing:
            return None
        return StoredObject(
            size=int(response["ContentLength"]),
            etag=str(response["ETag"]),
            metadata=dict(response.get("Metadata", {})),
        )

    def put_new(
        self,
        key: str,
        body: bytes | bytearray | memoryview,
        attributes: Mapping[str, Any],
        *,
        crc32c: bytes,
        md5: bytes | None = None,
    ) -> str:
        """Create ``key`` unless it exists; S3 verifies the CRC32C (and the MD5 when given).

        Raises:
            Exists: the key exists already.
        """
        extra: dict[str, Any] = {"ChecksumCRC32C": _b64(crc32c)}
        if md5 is not None:
            extra["ContentMD5"] = _b64(md5)
        return self._put(key, body, {"IfNoneMatch": "*", **attributes, **extra})

    def put_replacing(
        self,
        key: str,
        body: bytes | bytearray | memoryview,
        attributes: Mapping[str, Any],
        *,
        etag: str,
        crc32c: bytes,
        md5: bytes | None = None,
    ) -> str:
        """Overwrite ``key`` only while its ETag is still ``etag`` (``If-Match``). Its new ETag.

        Raises:
            Changed: the object is no longer the one with ``etag`` (or is gone).
        """
        if not etag:
            raise ValueError("a replacing write needs the ETag of the object it replaces")
        extra: dict[str, Any] = {"ChecksumCRC32C": _b64(crc32c)}
        if md5 is not None:
            extra["ContentMD5"] = _b64(md5)
        with _replacing(key):
            return self._put(key, body, {"IfMatch": etag, **attributes, **extra})

    def delete_if_match(self, key: str, etag: str) -> bool:
        """Delete ``key`` only while its ETag is still ``etag``; False if it changed or is gone.

        S3 evaluates ``If-Match`` on DeleteObject in general purpose buckets (conditional
        deletes), so a copy replaced by the application meanwhile survives.
        """
        if not etag:
            raise ValueError("a conditional delete needs the ETag of the object it deletes")
        try:
            with _replacing(key), _call("DeleteObject"):
                self.client.delete_object(Bucket=self.name, Key=key, IfMatch=etag)
        except Changed:
            return False
        return True

    def list_objects(self, prefix: str) -> Iterator[ListedObject]:
        """Every object under ``prefix``, page by page, in the order the server lists them.

        Amazon S3 general purpose buckets list keys in UTF-8 binary order (Python's ``str``
        order); S3-compatible servers may not, so callers that need an order sort.
        """
        paginator = self.client.get_paginator("list_objects_v2")
        with _call("ListObjectsV2"):
            for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ListedObject(
                        key=str(item["Key"]),
                        size=int(item.get("Size", 0)),
                        etag=str(item.get("ETag", "")),
                        last_modified=item.get("LastModified"),
                    )

    # --- multipart ----------------------------------------------------------------------------

    def create_upload(self, key: str, attributes: Mapping[str, Any]) -> str:
        """Start a multipart upload whose parts carry CRC32C checksums; its upload id."""
        with _call("CreateMultipartUpload"):
            response = self.client.create_multipart_upload(
                Bucket=self.name, Key=key, ChecksumAlgorithm="CRC32C", **attributes
            )
        return str(response["UploadId"])

    def upload_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        body: bytes | bytearray | memoryview,
        crc32c: bytes,
    ) -> str:
        """Upload one part; S3 rejects it if the bytes do not match ``crc32c``. Its ETag."""
        with _call("UploadPart"):
            response = self.client.upload_part(
                Bucket=self.name,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=_body(body),
                ChecksumCRC32C=_b64(crc32c),
            )
        return str(response["ETag"])

    def list_parts(
        self, key: str, upload_id: str
    ) -> dict[int, tuple[str, int, bytes | None]] | None:
        """Uploaded parts as ``{number: (etag, size, crc32c)}``; None if the upload is gone.

        The CRC32C is None where the server does not list part checksums.
        """
        parts: dict[int, tuple[str, int, bytes | None]] = {}
        marker = 0
        try:
            while True:
                with _call("ListParts"):
                    response = self.client.list_parts(
                        Bucket=self.name, Key=key, UploadId=upload_id, PartNumberMarker=marker
                    )
                for part in response.get("Parts", []):
                    crc = part.get("ChecksumCRC32C")
                    parts[int(part["PartNumber"])] = (
                        str(part["ETag"]),
                        int(part["Size"]),
                        base64.b64decode(crc) if crc else None,
                    )
                if not response.get("IsTruncated"):
                    return parts
                marker = int(response["NextPartNumberMarker"])
        except _Missing:
            return None

    def complete_new(
        self, key: str, upload_id: str, parts: Mapping[int, tuple[str, bytes | None]]
    ) -> str:
        """Complete the upload unless ``key`` exists (``If-None-Match: *``). Its ETag.

        Args:
            parts: ``{number: (etag, crc32c or None)}``.

        Raises:
            Exists: the key exists already (the upload is left for the caller to abort).
            Conflict: a concurrent conditional write; worth retrying.
        """
        listed = _parts(parts)
        with _call("CompleteMultipartUpload"):
            response = self.client.complete_multipart_upload(
                Bucket=self.name,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},  # type: ignore[typeddict-item]
                IfNoneMatch="*",
            )
        return str(response.get("ETag", ""))

    def complete_replacing(
        self, key: str, upload_id: str, parts: Mapping[int, tuple[str, bytes | None]], *, etag: str
    ) -> str:
        """Complete the upload only while ``key``'s ETag is still ``etag`` (``If-Match``).

        Raises:
            Changed: the object is no longer the one with ``etag`` (the upload is left for the
                caller to abort).
            Conflict: a concurrent conditional write; worth retrying.
        """
        if not etag:
            raise ValueError("a replacing write needs the ETag of the object it replaces")
        with _replacing(key), _call("CompleteMultipartUpload"):
            response = self.client.complete_multipart_upload(
                Bucket=self.name,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": _parts(parts)},  # type: ignore[typeddict-item]
                IfMatch=etag,
            )
        return str(response.get("ETag", ""))

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload (already gone is fine)."""
        with contextlib.suppress(_Missing), _call("AbortMultipartUpload"):
            self.client.abort_multipart_upload(Bucket=self.name, Key=key, UploadId=upload_id)

    def open_uploads(self, prefix: str) -> list[tuple[str, str]]:
        """``(key, upload_id)`` of the multipart uploads in progress under ``prefix``."""
        found: list[tuple[str, str]] = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        with _call("ListMultipartUploads"):
            for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
                found.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", []))
        return found

    # --- small conditional documents (leases) ------------------------------------------------

    def create_document(self, key: str, body: bytes) -> str | None:
        """Create ``key`` if absent; its ETag, or None if it already exists."""
        try:
            return self._put(key, body, {"IfNoneMatch": "*"})
        except Exists:
            return None

    def replace_document(self, key: str, body: bytes, etag: str) -> str | None:
        """Overwrite ``key`` only if its ETag is still ``etag``; the new ETag, or None."""
        try:
            return self._put(key, body, {"IfMatch": etag})
        except (Exists, _Missing):
            return None

    def read_document(self, key: str) -> tuple[bytes, str] | None:
        """``(body, etag)`` of a small object, or None if it does not exist."""
        try:
            with _call("GetObject"):
                response = self.client.get_object(Bucket=self.name, Key=key)
                return response["Body"].read(), str(response["ETag"])
        except _Missing:
            return None

    def delete_document(self, key: str, etag: str) -> None:
        """Delete ``key`` only if its ETag is still ``etag`` (gone or changed is fine)."""
        with contextlib.suppress(Exists, _Missing), _call("DeleteObject"):
            self.client.delete_object(Bucket=self.name, Key=key, IfMatch=etag)
