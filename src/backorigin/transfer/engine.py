"""The copy engine: one object from an origin into S3 — verified, create-only, single-flight.

S3 ends up with exactly the origin's bytes and metadata, or with nothing: every part carries a
CRC32C that S3 checks, the whole object is checked against the size and the digests the origin
states, the object is created with ``If-None-Match: *`` (never overwriting), and any failure
aborts the multipart upload. Reads are pinned to the version seen at HEAD, run in parallel and
overlap the uploads, with memory bounded by about ``part_size x (concurrency + 1)``.

The one write that replaces an object is a *refresh* (``copy(key, replace=ETAG)``): it
replaces a stale copy the engine made earlier, and only that exact object — the write is
conditional on its ETag (``If-Match``), so anything written over it since is left alone.
"""

from __future__ import annotations

__all__ = ["CopyEngine", "IntegrityError"]

import base64
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from backorigin.adapters import OriginAdapter, create_adapter
from backorigin.config.models import Config
from backorigin.config.secrets import SecretResolver
from backorigin.errors import (
    BackoriginError,
    InvalidKey,
    ObjectNotFound,
    PreconditionFailed,
    TransientOriginError,
)
from backorigin.keys import RESERVED_PREFIX, Route, Router, Target, bucket_key, is_reserved
from backorigin.transfer.bucket import (
    Bucket,
    BucketError,
    Changed,
    Conflict,
    Exists,
    StoredObject,
    make_s3_client,
)
from backorigin.transfer.digest import ObjectDigests, crc32c
from backorigin.transfer.lease import Lease, LeaseLost
from backorigin.transfer.outcome import CopyOutcome, CopyResult
from backorigin.transfer.plan import Part, part_size_for, plan_parts
from backorigin.types import PROVENANCE_FIELDS, ByteRange, ObjectInfo
from backorigin.types import PROVENANCE_PREFIX as PROVENANCE_PREFIX  # re-exported

log = logging.getLogger("backorigin.transfer")


class IntegrityError(BackoriginError):
    """The bytes read do not match the size or a digest the origin states."""


class _DeadlineReached(BackoriginError):
    """Time ran out; the upload and lease are left for the next attempt to resume."""


def _crc_bytes(value: int) -> bytes:
    return value.to_bytes(4, "big")


class CopyEngine:
    """Copies objects from the configured origins into the bucket.

    Args:
        config: The validated configuration (``bucket.name`` is required).
        s3_client: A boto3 S3 client for the bucket (built from the config when omitted).
        adapters: Origin adapters by origin name (built from the config on first use).
        secrets: Resolves the origins' secret references.
        read_attempts: How often one part's read may be resumed after the origin drops the
            connection or fails transiently.
        clock: Wall clock for lease expiry (tests pass their own).
    """

    def __init__(
        self,
        config: Config,
        *,
        s3_client: Any = None,
        adapters: Mapping[str, OriginAdapter[Any]] | None = None,
        secrets: SecretResolver | None = None,
        read_attempts: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not config.bucket.name:
            raise ValueError("bucket.name must be set in the config to copy objects")
        self.config = config
        concurrency = config.transfer.concurrency
        client = s3_client or make_s3_client(config.bucket, max_pool_connections=concurrency + 4)
        self.bucket = Bucket(client, config.bucket.name)
        self.router = Router(config)
        self.secrets = secrets if secrets is not None else SecretResolver()
        self.read_attempts = read_attempts
        self._clock = clock
        self._adapters: dict[str, OriginAdapter[Any]] = dict(adapters or {})
        self._adapters_lock = threading.Lock()

    # --- public API ---------------------------------------------------------------------------

    def adapter(self, origin: str) -> OriginAdapter[Any]:
        """The adapter of the origin named ``origin``, built once."""
        with self._adapters_lock:
            if origin not in self._adapters:
                self._adapters[origin] = create_adapter(
                    self.config.origin(origin), secrets=self.secrets
                )
            return self._adapters[origin]

    def copy(
        self, key: str, *, deadline: float | None = None, replace: str | None = None
    ) -> CopyResult:
        """Copy ``key`` into the bucket unless it is there already.

        Args:
            key: The viewer-facing key (as decoded from the request URI).
            deadline: A ``time.monotonic()`` instant; a multipart copy still running then stops
                cleanly and leaves its upload for the next attempt to resume.
            replace: Refresh instead: the ETag of a stale copy in the bucket to replace with
                the origin's current object. Only an object with exactly this ETag that
                carries the engine's provenance is replaced (the write is conditional on the
                ETag); anything else there ends ``exists`` with the reason, untouched. When
                no object is at the key any more, the copy is made as usual (create-only).

        Returns:
            The outcome; this method does not raise for origin, S3 or integrity failures.
        """
        started = time.monotonic()

        def result(outcome: CopyOutcome, **fields: Any) -> CopyResult:
            return CopyResult(key, outcome, seconds=time.monotonic() - started, **fields)

        if is_reserved(key):
            return result(CopyOutcome.FAILED, reason=f"keys under {RESERVED_PREFIX!r} are reserved")
        try:
            route = self.router.route(key)
        except InvalidKey as exc:
            return result(CopyOutcome.FAILED, reason=str(exc))
        except ObjectNotFound as exc:
            return result(CopyOutcome.NOT_FOUND, reason=str(exc))
        s3_key = bucket_key(self.config, key)
        try:
            existing = self.bucket.head(s3_key)
            if existing is not None:
                refusal = _refusal(existing, replace)
                if refusal is not None or replace is None:
                    return result(CopyOutcome.EXISTS, s3_key=s3_key, reason=refusal)
            found = self._locate(route)
        except BackoriginError as exc:  # origin, S3, secrets, a missing extra
            return result(CopyOutcome.FAILED, s3_key=s3_key, reason=str(exc))
        if found is None:
            names = ", ".join(t.origin for t in route.targets)
            return result(CopyOutcome.NOT_FOUND, s3_key=s3_key, reason=f"not found at {names}")
        target, info = found
        if info.size > self.config.transfer.max_object_size:
            return result(
                CopyOutcome.TOO_LARGE,
                s3_key=s3_key,
                origin=target.origin,
                reason=f"{info.size} bytes exceeds copy.max_object_size",
            )
        fields: dict[str, Any] = {"s3_key": s3_key, "origin": target.origin}
        try:
            lease = Lease.acquire(
                self.bucket,
                self.config.bucket.prefix,
                s3_key,
                ttl=self.config.transfer.lease_ttl,
                clock=self._clock,
            )
        except BucketError as exc:
            return result(CopyOutcome.FAILED, reason=str(exc), **fields)
        if lease is None:
            return result(CopyOutcome.IN_PROGRESS, **fields)
        suspended = False
        try:
            # Finished by another copier meanwhile, or (refreshing) replaced or removed.
            existing = self.bucket.head(s3_key)
            if_match: str | None = None
            if existing is not None:
                refusal = _refusal(existing, replace)
                if refusal is not None or replace is None:
                    return result(CopyOutcome.EXISTS, reason=refusal, **fields)
                if_match = replace
            if info.size <= part_size_for(info.size, self.config.transfer.part_size):
                # One part is far quicker than the lease's TTL: no heartbeat thread needed.
                self._copy_single(target, info, s3_key, if_match)
                resumed = 0
            else:
                lease.start_heartbeat()
                resumed = self._copy_multipart(target, info, s3_key, lease, deadline, if_match)
            return result(CopyOutcome.COPIED, bytes=info.size, resumed_parts=resumed, **fields)
        except Changed as exc:
            return result(CopyOutcome.EXISTS, reason=str(exc), **fields)
        except Exists:
            return result(CopyOutcome.EXISTS, **fields)
        except ObjectNotFound as exc:
            return result(
                CopyOutcome.NOT_FOUND, reason=f"vanished during the copy: {exc}", **fields
            )
        except LeaseLost as exc:
            return result(CopyOutcome.IN_PROGRESS, reason=str(exc), **fields)
        except _DeadlineReached as exc:
            suspended = True
            lease.suspend()
            return result(CopyOutcome.FAILED, reason=str(exc), **fields)
        except PreconditionFailed:
            reason = "the origin object changed during the copy; a retry copies the new version"
            return result(CopyOutcome.FAILED, reason=reason, **fields)
        except BackoriginError as exc:  # origin, S3, integrity, secrets
            return result(CopyOutcome.FAILED, reason=str(exc), **fields)
        finally:
            if not suspended:
                try:
                    lease.release()
                except BucketError as exc:  # it expires on its own
                    log.warning("could not release the lease of %s: %s", s3_key, exc)

    def close(self) -> None:
        """Release the adapters' connections."""
        with self._adapters_lock:
            for adapter in self._adapters.values():
                adapter.close()

    # --- steps --------------------------------------------------------------------------------

    def _locate(self, route: Route) -> tuple[Target, ObjectInfo] | None:
        """HEAD the route's origins in order; the first that has the object."""
        for target in route.targets:
            try:
                return target, self.adapter(target.origin).head(target.key)
            except ObjectNotFound:
                log.debug("%s not found at %s", target.key, target.origin)
        return None

    def _copy_single(
        self, target: Target, info: ObjectInfo, s3_key: str, if_match: str | None = None
    ) -> None:
        """One PutObject: create-only, or (``if_match``) replacing exactly that object."""
        data = bytes(self._read(target, info, 0, info.size))
        digests = ObjectDigests(info.checksums)
        digests.update(data)
        self._verify(digests, info)
        attributes = self._attributes(target, info)
        crc = _crc_bytes(crc32c(data))
        if if_match is None:
            self._create_only(
                lambda: self.bucket.put_new(
                    s3_key, data, attributes, crc32c=crc, md5=info.checksums.md5
                )
            )
        else:
            self._create_only(
                lambda: self.bucket.put_replacing(
                    s3_key, data, attributes, etag=if_match, crc32c=crc, md5=info.checksums.md5
                )
            )

    def _copy_multipart(
        self,
        target: Target,
        info: ObjectInfo,
        s3_key: str,
        lease: Lease,
        deadline: float | None,
        if_match: str | None = None,
    ) -> int:
        """Upload the missing parts in parallel, verify, complete. Returns parts resumed.

        The completion is create-only, or (``if_match``) replaces exactly that object.
        """
        part_size = part_size_for(info.size, self.config.transfer.part_size)
        parts = plan_parts(info.size, part_size)
        upload_id, done = self._resume(target, info, s3_key, lease, part_size, parts)
        if upload_id is None:
            upload_id = self.bucket.create_upload(s3_key, self._attributes(target, info))
        try:
            lease.update(
                origin=target.origin,
                version=info.version,
                size=info.size,
                part_size=part_size,
                upload_id=upload_id,
                parts=[(n, base64.b64encode(crc).decode()) for n, (_, crc) in sorted(done.items())],
            )
        except BaseException:
            # The lease does not name this upload, so no later copy would ever resume it.
            with contextlib.suppress(BucketError):
                self.bucket.abort_upload(s3_key, upload_id)
            raise
        self._abort_strays(s3_key, upload_id)
        resumed = len(done)
        # The whole-object digests need every byte in order, so only a copy that reads them
        # all checks them; a resumed copy relies on S3's per-part CRC32C checks and the size.
        digests = ObjectDigests(info.checksums) if not done else None
        try:
            self._upload_parts(
                target,
                info,
                s3_key,
                upload_id,
                [p for p in parts if p.number not in done],
                done,
                digests,
                lease,
                deadline,
            )
            if digests is not None:
                self._verify(digests, info)
            self._complete(s3_key, upload_id, done, if_match)
        except (LeaseLost, _DeadlineReached):
            raise  # the upload belongs to whoever resumes it
        except BaseException:
            self.bucket.abort_upload(s3_key, upload_id)
            raise
        return resumed

    def _resume(
        self,
        target: Target,
        info: ObjectInfo,
        s3_key: str,
        lease: Lease,
        part_size: int,
        parts: list[Part],
    ) -> tuple[str | None, dict[int, tuple[str, bytes]]]:
        """Take over an interrupted upload of the same object version, if the lease had one."""
        previous = lease.previous
        if previous is None or previous.upload_id is None:
            return None, {}
        same = (previous.origin, previous.version, previous.size, previous.part_size) == (
            target.origin,
            info.version,
            info.size,
            part_size,
        )
        if not same or info.version is None:
            self.bucket.abort_upload(s3_key, previous.upload_id)
            return None, {}
        listed = self.bucket.list_parts(s3_key, previous.upload_id)
        if listed is None:
            return None, {}
        recorded = {n: base64.b64decode(crc) for n, crc in previous.parts}
        done: dict[int, tuple[str, bytes]] = {}
        for number, (etag, size, crc) in listed.items():
            crc = crc or recorded.get(number)
            if 1 <= number <= len(parts) and size == parts[number - 1].size and crc is not None:
                done[number] = (etag, crc)
        log.info("resuming %s: %d of %d parts already uploaded", s3_key, len(done), len(parts))
        return previous.upload_id, done

    def _upload_parts(
        self,
        target: Target,
        info: ObjectInfo,
        s3_key: str,
        upload_id: str,
        todo: list[Part],
        done: dict[int, tuple[str, bytes]],
        digests: ObjectDigests | None,
        lease: Lease,
        deadline: float | None,
    ) -> None:
        """Read and upload ``todo`` with ``concurrency`` workers, consuming results in order.

        At most ``concurrency`` parts are in flight or waiting to be hashed, which bounds memory.
        """
        concurrency = self.config.transfer.concurrency
        keep = digests is not None

        def work(part: Part) -> tuple[str, bytes, bytearray | None]:
            data = self._read(target, info, part.start, part.stop)
            crc = _crc_bytes(crc32c(data))
            etag = self.bucket.upload_part(s3_key, upload_id, part.number, data, crc)
            # Recorded as soon as it is uploaded, in any order, so that a copier killed now
            # loses at most the parts still in flight.
            lease.record_part(part.number, base64.b64encode(crc).decode())
            return etag, crc, data if keep else None

        queue = iter(todo)
        pending: deque[tuple[Part, Future[tuple[str, bytes, bytearray | None]]]] = deque()
        stopping = False
        with ThreadPoolExecutor(concurrency, thread_name_prefix="backorigin-part") as pool:
            try:
                while True:
                    while not stopping and len(pending) < concurrency:
                        part = next(queue, None)
                        if part is None:
                            break
                        pending.append((part, pool.submit(work, part)))
                    if not pending:
                        break
                    part, future = pending.popleft()
                    etag, crc, data = future.result()
                    if digests is not None and data is not None:
                        digests.update(data)
                    done[part.number] = (etag, crc)
                    if deadline is not None and time.monotonic() > deadline and not stopping:
                        stopping = True
            except BaseException:
                for _, future in pending:
                    future.cancel()
                raise
        if stopping and any(p.number not in done for p in todo):
            raise _DeadlineReached("time ran out; the next attempt resumes this copy")

    def _abort_strays(self, s3_key: str, keep: str) -> None:
        """Abort the key's other open multipart uploads; best effort.

        Under the lease nobody else may upload this key, so they are orphans: left by a copier
        that died before recording its upload in the lease, or by a CreateMultipartUpload whose
        response was lost and which botocore retried.
        """
        try:
            for key, upload_id in self.bucket.open_uploads(s3_key):
                if key == s3_key and upload_id != keep:
                    log.info("aborting an orphaned multipart upload of %s", s3_key)
                    self.bucket.abort_upload(s3_key, upload_id)
        except BucketError as exc:  # the bucket's lifecycle rule aborts them eventually
            log.warning("could not clean up orphaned uploads of %s: %s", s3_key, exc)

    def _complete(
        self,
        s3_key: str,
        upload_id: str,
        done: dict[int, tuple[str, bytes]],
        if_match: str | None = None,
    ) -> None:
        parts: dict[int, tuple[str, bytes | None]] = {
            n: (etag, crc) for n, (etag, crc) in done.items()
        }
        if if_match is None:
            self._create_only(lambda: self.bucket.complete_new(s3_key, upload_id, parts))
        else:
            self._create_only(
                lambda: self.bucket.complete_replacing(s3_key, upload_id, parts, etag=if_match)
            )

    @staticmethod
    def _create_only(write: Callable[[], object]) -> None:
        """Run a create-only write, retrying S3's 409 ConditionalRequestConflict (a concurrent
        conditional write on the key), as S3 asks: up to three retries."""
        for attempt in range(4):
            try:
                write()
                return
            except Conflict:
                if attempt == 3:
                    raise
                time.sleep(0.2 * 2**attempt)

    def _read(self, target: Target, info: ObjectInfo, start: int, stop: int) -> bytearray:
        """Bytes ``[start, stop)`` of the object, pinned to its version.

        A read that fails transiently or ends early resumes from the first missing byte, up to
        ``read_attempts`` times; this is the engine's one retry loop (the adapters retry whole
        requests with their SDKs' own policies).
        """
        adapter = self.adapter(target.origin)
        wanted = stop - start
        buffer = bytearray()
        failures = 0
        while True:
            if wanted == 0:
                stream = adapter.read(target.key, None, info.version)
            else:
                stream = adapter.read(
                    target.key, ByteRange.bounded(start + len(buffer), stop), info.version
                )
            error: TransientOriginError | None = None
            try:
                for chunk in stream:
                    buffer += chunk
                    if len(buffer) > wanted:
                        raise IntegrityError(
                            f"the origin sent more than the {wanted} bytes asked for"
                        )
            except TransientOriginError as exc:
                error = exc
            finally:
                stream.close()
            if len(buffer) == wanted:
                return buffer
            failures += 1
            if failures >= self.read_attempts:
                why = str(error) if error else "the origin's response ended early"
                raise TransientOriginError(
                    f"reading bytes {start}-{stop} failed {failures} times: {why}"
                ) from error
            pause = error.retry_after if error and error.retry_after else 0.1 * 2**failures
            time.sleep(min(pause, 10.0))

    @staticmethod
    def _verify(digests: ObjectDigests, info: ObjectInfo) -> None:
        if digests.size != info.size:
            raise IntegrityError(f"read {digests.size} bytes but the origin stated {info.size}")
        bad = digests.mismatches()
        if bad:
            raise IntegrityError(
                f"the data does not match the origin's {', '.join(bad)}; nothing was stored"
            )

    def _attributes(self, target: Target, info: ObjectInfo) -> dict[str, Any]:
        """PutObject/CreateMultipartUpload parameters: HTTP metadata, user metadata, provenance."""
        attributes: dict[str, Any] = {}
        for name, value in (
            ("ContentType", info.content_type),
            ("CacheControl", info.cache_control),
            ("ContentEncoding", info.content_encoding),
            ("ContentDisposition", info.content_disposition),
            ("ContentLanguage", info.content_language),
        ):
            if value:
                attributes[name] = value
        if info.expires:
            try:
                attributes["Expires"] = parsedate_to_datetime(info.expires)
            except (TypeError, ValueError):
                log.warning("dropping unparsable Expires %r of %s", info.expires, info.key)
        metadata: dict[str, str] = {}
        for name, value in info.metadata.items():
            if (
                _header_safe(name)
                and _header_safe(value)
                and not name.startswith(PROVENANCE_PREFIX)
            ):
                metadata[name] = value
            else:
                log.warning("dropping user metadata %r of %s: not plain ASCII", name, info.key)
        provenance = {
            "origin": target.origin,
            "origin-key": target.key if target.key.isascii() else None,
            "origin-version": info.version,
            "origin-etag": info.etag,
            "origin-last-modified": info.last_modified.isoformat() if info.last_modified else None,
            "copied-at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        # Viewers are shielded from exactly PROVENANCE_FIELDS; a new field is added there.
        assert provenance.keys() == set(PROVENANCE_FIELDS)
        for name, value in provenance.items():
            if value is not None and _header_safe(value):
                metadata[PROVENANCE_PREFIX + name] = value
        attributes["Metadata"] = metadata
        return attributes


def _refusal(existing: StoredObject, replace: str | None) -> str | None:
    """Why a refresh must leave ``existing`` alone, or None when it may replace it.

    Only the exact copy that was found stale (same ETag) and that the engine made (it carries
    the provenance) is ever replaced; an object the application wrote is never touched.
    """
    if replace is None:
        return None
    if _strip_etag(existing.etag) != _strip_etag(replace):
        return "the object in S3 changed since it was examined; left alone"
    if PROVENANCE_PREFIX + "origin" not in existing.metadata:
        return "the object in S3 was not copied by backorigin; left alone"
    return None


def _strip_etag(value: str) -> str:
    return value.removeprefix("W/").strip('"')


def _header_safe(text: str) -> bool:
    return text.isascii() and text.isprintable()
