"""The shared read path: what every adapter's GET goes through once it has been sent.

An adapter implements one primitive, :meth:`~backorigin.adapters.OriginAdapter.get_once`:
send one GET for the options' range, pinned as its protocol can, and return a :class:`RawGet`
(the body, the object's metadata taken from the answer's own headers, and the window the
answer states it holds). Everything else lives here, once:

* status codes become :mod:`backorigin.errors` through one table per protocol
  (:func:`status_error`);
* the answer is checked against the pin (version, ETag, size) and against the requested window
  (a ``Content-Range`` that is not the one asked for is refused; a whole body sent to a ranged
  request is cut down to the requested bytes);
* :class:`GetResult` hands the bytes out with ``readinto`` into the caller's buffer and, when
  the body fails or ends early, resumes from the first missing byte with another GET pinned to
  the version the first answer described, so a resumed read never mixes two versions.
"""

from __future__ import annotations

__all__ = [
    "ChunkBody",
    "GetResult",
    "RawBody",
    "RawGet",
    "WireProtocol",
    "check_pin",
    "content_range",
    "open_get",
    "status_error",
]

import io
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Literal, Protocol

from backorigin.errors import (
    InvalidRange,
    ObjectNotFound,
    OriginError,
    PermissionDenied,
    PreconditionFailed,
    TransientOriginError,
    Unauthenticated,
)
from backorigin.types import ByteRange, GetOptions, ObjectInfo

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

WireProtocol = Literal["http", "s3", "gcs", "azure"]
"""The protocols :func:`status_error` has a table for."""

RESUME_ATTEMPTS = 5
"""Failed requests or dropped bodies one :class:`GetResult` survives by default."""
MAX_PAUSE = 10.0
"""The longest wait between two attempts, whatever ``Retry-After`` asked for."""
_SKIP_BUFFER = 64 * 1024


# --- status → error ------------------------------------------------------------------------------

# Error codes some protocols state beside the status, where the status alone says too little.
_CODES: dict[WireProtocol, dict[str, type[OriginError]]] = {
    "http": {},
    "gcs": {},
    "s3": {
        **dict.fromkeys(("NoSuchKey", "NoSuchBucket", "NotFound"), ObjectNotFound),
        # A pinned VersionId that is gone: the version the read was pinned to no longer exists.
        "NoSuchVersion": PreconditionFailed,
        "PreconditionFailed": PreconditionFailed,
        "InvalidRange": InvalidRange,
        **dict.fromkeys(
            (
                "SignatureDoesNotMatch",
                "InvalidAccessKeyId",
                "InvalidClientTokenId",
                "InvalidToken",
                "ExpiredToken",
                "ExpiredTokenException",
                "TokenRefreshRequired",
                "MissingSecurityHeader",
                "MissingAuthenticationToken",
                "IncompleteSignature",
                "InvalidSecurity",
                "RequestTimeTooSkewed",
                "Unauthorized",
            ),
            Unauthenticated,
        ),
        **dict.fromkeys(
            ("AccessDenied", "AccessDeniedException", "AllAccessDisabled", "AccountProblem"),
            PermissionDenied,
        ),
        **dict.fromkeys(
            (
                "SlowDown",
                "Throttling",
                "ThrottlingException",
                "ThrottledException",
                "RequestThrottled",
                "RequestThrottledException",
                "TooManyRequestsException",
                "RequestLimitExceeded",
                "BandwidthLimitExceeded",
                "RequestTimeout",
                "RequestTimeoutException",
                "InternalError",
                "ServiceUnavailable",
                "PriorRequestNotComplete",
            ),
            TransientOriginError,
        ),
    },
    "azure": {
        # Credentials Azure could not verify (bad signature, expired SAS, missing auth); other
        # 403 codes (AuthorizationFailure, …Mismatch) refuse valid credentials.
        **dict.fromkeys(
            ("AuthenticationFailed", "InvalidAuthenticationInfo", "NoAuthenticationInformation"),
            Unauthenticated,
        ),
        "PublicAccessNotPermitted": PermissionDenied,  # a 409
        "InvalidRange": InvalidRange,
        "ConditionNotMet": PreconditionFailed,
        "BlobNotFound": ObjectNotFound,
        "ContainerNotFound": ObjectNotFound,
    },
}


def _by_status(status: int) -> type[OriginError]:
    """The class every protocol gives ``status`` when no error code says otherwise."""
    if status in (404, 410):
        return ObjectNotFound
    if status == 401:
        return Unauthenticated
    if status == 403:
        return PermissionDenied
    if status in (304, 412):  # 304: an If-None-Match/If-Modified-Since answer, never wanted
        return PreconditionFailed
    if status == 416:
        return InvalidRange
    # 408 Request Timeout: the server gave up waiting for us; the next attempt may well work.
    if status in (408, 429) or 500 <= status <= 599:
        return TransientOriginError
    return OriginError


def status_error(
    status: int | None,
    what: str,
    *,
    protocol: WireProtocol = "http",
    code: str | None = None,
    retry_after: float | None = None,
) -> OriginError:
    """The error for an answer an operation cannot use: the one status mapping of every adapter.

    Args:
        status: The HTTP status (None when an SDK states only an error code).
        what: The operation, for the message (``GET 'a.bin' at origin 'legacy'``).
        protocol: Whose error codes ``code`` is.
        code: The protocol's error code (S3's ``NoSuchKey``, Azure's ``x-ms-error-code``).
        retry_after: Seconds the origin asked us to wait, for transient errors.

    Returns:
        The error to raise (``from`` the SDK's exception, when there is one). The message
        names the status and the code, never a server's text.
    """
    kind = _CODES[protocol].get(code or "")
    if kind is None:
        kind = _by_status(status) if status is not None else OriginError
    try:
        phrase = HTTPStatus(status).phrase if status is not None else ""
    except ValueError:
        phrase = "unknown status"
    detail = " ".join(p for p in (f"HTTP {status} {phrase}" if status else "", code or "") if p)
    message = f"{what}: {detail or 'failed'}"
    if kind is TransientOriginError:
        return TransientOriginError(message, retry_after=retry_after)
    if kind is PreconditionFailed:
        return PreconditionFailed(f"{what}: the object changed ({detail or 'precondition'})")
    return kind(message)


# --- what an adapter returns ---------------------------------------------------------------------


class RawBody(Protocol):
    """An open response body, as an adapter hands it over.

    ``readinto`` fills the start of ``buffer`` with the next bytes and returns how many (0 at
    the end of the body); it raises :mod:`backorigin.errors` exceptions only (a dropped
    connection is a :class:`TransientOriginError`). ``close`` releases the connection, keeping
    it for reuse only when the body was read to its end.
    """

    def readinto(self, buffer: memoryview) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RawGet:
    """One GET's answer, before the shared read path checked it.

    Attributes:
        body: The open body.
        info: The object as the answer's headers describe it; ``size`` is the whole
            object's size (from ``Content-Range``'s total, or the length of a whole body).
        served: The half-open window ``(start, stop)`` the answer's ``Content-Range`` states,
            or None when the body is the whole object from its first byte.
    """

    body: RawBody
    info: ObjectInfo
    served: tuple[int, int] | None = None


class ChunkBody:
    """A :class:`RawBody` over an iterator of chunks, for SDKs that hand out chunks.

    Args:
        chunks: The body's chunks; exceptions from it must already be translated.
        close: Releases the connection (called once).
    """

    def __init__(self, chunks: Iterator[bytes], close: Callable[[], None] | None = None) -> None:
        self._chunks: Iterator[bytes] | None = chunks
        self._rest = memoryview(b"")
        self._close = close

    def readinto(self, buffer: memoryview) -> int:
        """Copy the next bytes into ``buffer``; 0 at the end."""
        while not self._rest:
            if self._chunks is None:
                return 0
            chunk = next(self._chunks, None)
            if chunk is None:
                self._chunks = None
                return 0
            self._rest = memoryview(chunk)
        count = min(len(buffer), len(self._rest))
        buffer[:count] = self._rest[:count]
        self._rest = self._rest[count:]
        return count

    def close(self) -> None:
        """Stop iterating and release the connection."""
        chunks, self._chunks = self._chunks, None
        closer = getattr(chunks, "close", None)
        if callable(closer):
            closer()
        close, self._close = self._close, None
        if close is not None:
            close()


# --- checks --------------------------------------------------------------------------------------

_CONTENT_RANGE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")


def content_range(value: str | None) -> tuple[int | None, int | None, int | None] | None:
    """``bytes a-b/n`` → ``(a, b, n)`` (inclusive ``b``); ``*`` parts are None; None if
    ``value`` is absent or unparsable."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if match is None:
        return None
    first, last, total = match.groups()
    return (
        None if first is None else int(first),
        None if last is None else int(last),
        None if total == "*" else int(total),
    )


def _bare(etag: str) -> str:
    return etag.removeprefix("W/").strip('"')


def check_pin(options: GetOptions, info: ObjectInfo, what: str) -> None:
    """Refuse an answer that is not the version ``options`` pins (for origins that ignore
    preconditions, and for a version replaced by one with the same ETag).

    Raises:
        PreconditionFailed: the answer describes another version.
    """
    pin = options.pin
    if options.version is not None and info.version != options.version:
        raise PreconditionFailed(f"{what}: the object changed (version {info.version})")
    if (
        options.if_match is not None
        and info.etag is not None
        and _bare(options.if_match) != _bare(info.etag)
    ):
        raise PreconditionFailed(f"{what}: the object changed (ETag {info.etag})")
    if pin is None:
        return
    if pin.version is not None and info.version is not None and pin.version != info.version:
        raise PreconditionFailed(f"{what}: the object changed (version {info.version})")
    if pin.etag is not None and info.etag is not None and _bare(pin.etag) != _bare(info.etag):
        raise PreconditionFailed(f"{what}: the object changed (ETag {info.etag})")
    if pin.size != info.size:
        raise PreconditionFailed(f"{what}: the object changed (size {info.size}, not {pin.size})")
    if (
        pin.version is None
        and pin.last_modified is not None
        and info.last_modified is not None
        and pin.last_modified != info.last_modified
    ):
        raise PreconditionFailed(f"{what}: the object changed (Last-Modified)")


def _window(raw: RawGet, range: ByteRange | None, what: str) -> tuple[int, int, int]:
    """``(start, stop, skip)``: the requested window resolved against the object's size, and
    the bytes of the body before it (a whole body sent for a ranged request)."""
    size = raw.info.size
    if range is None:
        start, stop = 0, size
    else:
        try:
            start, stop = range.resolve(size)
        except InvalidRange as exc:
            raise InvalidRange(f"{what}: {exc}") from None
    if raw.served is None:
        return start, stop, start
    if raw.served != (start, stop):
        first, end = raw.served
        raise OriginError(
            f"{what}: the origin sent bytes {first}-{end - 1}/{size}, not {start}-{stop - 1}"
        )
    return start, stop, 0


# --- the result ----------------------------------------------------------------------------------


class GetResult(io.RawIOBase):
    """One read of an object: its metadata, the range served and the bytes, resumed on failure.

    In the manner of object_store's ``GetResult``. Read it with :meth:`readinto` (into the
    caller's own buffer, e.g. a ``memoryview`` of a pooled part buffer), :meth:`read`,
    :meth:`readall`, or by iterating over chunks of ``chunk_size`` bytes. Close it (or use
    it as a context manager) to release the connection when stopping early.

    A body that fails transiently or ends before the window's end is resumed from its first
    missing byte with a new request pinned to :attr:`info`: the bytes handed out always
    belong to one version, or the read fails with
    :class:`~backorigin.errors.PreconditionFailed`.

    Attributes:
        info: The object as the first answer described it (it can stand in for a HEAD).
        range: The half-open window ``(start, stop)`` of the object this result delivers.
        resumes: How many times the body was resumed with a new request.
    """

    def __init__(
        self,
        get_once: Callable[[GetOptions], RawGet],
        options: GetOptions,
        what: str,
        *,
        attempts: int = RESUME_ATTEMPTS,
        chunk_size: int = 256 * 1024,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        if attempts < 1 or chunk_size < 1:
            raise ValueError("attempts and chunk_size must be positive")
        self._get_once = get_once
        self._what = what
        self._attempts = attempts
        self._sleep = sleep
        self.chunk_size = chunk_size
        self.resumes = 0
        self._failures = 0
        self._body: RawBody | None = None
        self._skip = 0
        raw = self._first(options)
        try:
            check_pin(options, raw.info, what)
            start, stop, self._skip = _window(raw, options.range, what)
        except BaseException:
            raw.body.close()
            raise
        self._body = raw.body
        self.info = raw.info
        self.range = (start, stop)
        self._position = start
        # Later requests are pinned to what the first answer described, not just to what
        # was asked: without a pin of its own, a read still never mixes two versions.
        self._resume_options = GetOptions(
            pin=options.pin if options.pin is not None else raw.info,
            if_match=options.if_match,
            version=options.version,
        )
        if start >= stop:
            self._release()

    # --- io.RawIOBase --------------------------------------------------------------------------

    def readable(self) -> bool:
        """Always True."""
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill the start of ``buffer`` with the next bytes; 0 at the end of the window.

        Raises:
            TransientOriginError: the body failed more often than the attempts allow.
            PreconditionFailed: a resume found another version of the object.
        """
        view = memoryview(buffer).cast("B")
        while True:
            remaining = self.range[1] - self._position
            if remaining <= 0 or not len(view):
                return 0
            if self._body is None:
                if self.closed:
                    raise ValueError("read from a closed GetResult")
                self._resume()
                continue
            error: TransientOriginError | None = None
            try:
                count = self._fill(view[: min(remaining, len(view))])
            except TransientOriginError as exc:
                count, error = 0, exc
            if count == 0:
                self._release()
                self._failed(error, "the body ended early")
                continue
            self._position += count
            if self._position >= self.range[1]:
                self._release()
            return count

    def readall(self) -> bytes:
        """The rest of the window, in one buffer sized for it."""
        buffer = bytearray(self.range[1] - self._position)
        view = memoryview(buffer)
        filled = 0
        while filled < len(buffer):
            filled += self.readinto(view[filled:])
        return bytes(buffer)

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when ``size`` is -1 or None)."""
        if size is None or size < 0:
            return self.readall()
        buffer = bytearray(size)
        count = self.readinto(buffer)
        return bytes(buffer[:count])

    def __iter__(self) -> GetResult:
        return self

    def __next__(self) -> bytes:
        """The next chunk of at most ``chunk_size`` bytes (``ObjectStream`` compatibility)."""
        chunk = self.read(self.chunk_size)
        if not chunk:
            raise StopIteration
        return chunk

    def close(self) -> None:
        """Release the connection; reading afterwards is an error."""
        self._release()
        super().close()

    def __enter__(self) -> GetResult:
        return self

    # --- the rest ------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes in the window: ``stop - start``."""
        return self.range[1] - self.range[0]

    @property
    def position(self) -> int:
        """The object offset of the next byte :meth:`readinto` delivers."""
        return self._position

    def _first(self, options: GetOptions) -> RawGet:
        while True:
            try:
                return self._get_once(options)
            except TransientOriginError as exc:
                self._failed(exc, "the request failed")

    def _fill(self, view: memoryview) -> int:
        body = self._body
        assert body is not None
        if self._skip:
            scratch = memoryview(bytearray(min(self._skip, _SKIP_BUFFER)))
            while self._skip:
                count = body.readinto(scratch[: min(self._skip, len(scratch))])
                if count == 0:
                    return 0
                self._skip -= count
        return body.readinto(view)

    def _resume(self) -> None:
        stop = self.range[1]
        options = self._resume_options.with_range(ByteRange.bounded(self._position, stop))
        try:
            raw = self._get_once(options)
        except TransientOriginError as exc:
            self._failed(exc, "the request failed")
            return
        try:
            check_pin(options, raw.info, self._what)
            start, end, skip = _window(raw, options.range, self._what)
        except BaseException:
            raw.body.close()
            raise
        if (start, end) != (self._position, stop):  # only if the size changed: pin checked
            raw.body.close()
            raise PreconditionFailed(f"{self._what}: the object changed while being read")
        self.resumes += 1
        self._body, self._skip = raw.body, skip

    def _failed(self, error: TransientOriginError | None, why: str) -> None:
        self._failures += 1
        if self._failures >= self._attempts:
            detail = str(error) if error is not None else why
            raise TransientOriginError(
                f"{self._what}: failed {self._failures} times: {detail}",
                retry_after=error.retry_after if error is not None else None,
            ) from error
        pause = error.retry_after if error is not None and error.retry_after else None
        self._sleep(min(pause if pause is not None else 0.1 * 2**self._failures, MAX_PAUSE))

    def _release(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()


def open_get(
    get_once: Callable[[GetOptions], RawGet],
    options: GetOptions,
    what: str,
    *,
    attempts: int = RESUME_ATTEMPTS,
    chunk_size: int = 256 * 1024,
) -> GetResult:
    """Send the first GET through ``get_once`` and wrap it in a checked, resuming result.

    Raises:
        ObjectNotFound, PreconditionFailed, InvalidRange, PermissionDenied, Unauthenticated,
        OriginError: as the origin answered; TransientOriginError once ``attempts`` ran out.
    """
    return GetResult(get_once, options, what, attempts=attempts, chunk_size=chunk_size)
