"""The copy engine: one object from an origin into S3 — verified, create-only, single-flight.

S3 ends up with exactly the origin's bytes and metadata, or with nothing: every part carries a
CRC32C that S3 checks, the whole object is checked against the size and the digests the origin
states, the object is created with ``If-None-Match: *`` (never overwriting), and any failure
aborts the multipart upload. Reads are pinned to the version seen at HEAD, run in parallel and
overlap the uploads; parts are read into a fixed pool of buffers and sent from them without a
copy, so memory is at most ``part_size x (concurrency + 2)`` whatever the object's size.

Single-flight: a multipart copy holds a lease, so one copier reads the object while others
answer ``in_progress``, and a copy cut short is resumed. An object that fits one PutObject
takes no lease: racing copiers may each read it (one part each at most), and the create-only
write lets exactly one of them store it; the others end ``exists``.

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
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from backorigin.adapters import OriginAdapter, create_adapter
from backorigin.adapters.read import GetResult
from backorigin.config.models import Config
from backorigin.config.secrets import SecretResolver
from backorigin.errors import (
    BackoriginError,
    InvalidKey,
    ObjectNotFound,
    PreconditionFailed,
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
from backorigin.transfer.buffers import BufferPool
from backorigin.transfer.digest import ObjectDigests, crc32c
from backorigin.transfer.lease import Lease, LeaseLost
from backorigin.transfer.outcome import CopyOutcome, CopyResult
from backorigin.transfer.plan import Part, part_size_for, plan_parts
from backorigin.types import PROVENANCE_FIELDS, ByteRange, GetOptions, ObjectInfo
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
        self,
        key: str,
        *,
        deadline: float | None = None,
        replace: str | None = None,
        absent: bool = False,
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
            absent: The caller has just seen that the bucket lacks the key (a listing), so
                the engine does not ask S3 again first. It changes no guarantee: the write
                is create-only either way, and an object that appeared meanwhile ends
                ``exists``.

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
            existing = None if absent and replace is None else self.bucket.head(s3_key)
            if existing is not None:
                refusal = _refusal(existing, replace)
                if refusal is not None or replace is None:
                    return result(CopyOutcome.EXISTS, s3_key=s3_key, reason=refusal)
            found = self._open(route, read=absent and replace is None)
        except BackoriginError as exc:  # origin, S3, secrets, a missing extra
            return result(CopyOutcome.FAILED, s3_key=s3_key, reason=str(exc))
        if found is None:
            names = ", ".join(t.origin for t in route.targets)
            return result(CopyOutcome.NOT_FOUND, s3_key=s3_key, reason=f"not found at {names}")
        target, info, first = found
        try:
            return self._copy_found(
                target, info, first, s3_key, existing, replace, deadline, result
            )
        finally:
            if first is not None:
                first.close()

    def _copy_found(
        self,
        target: Target,
        info: ObjectInfo,
        first: GetResult | None,
        s3_key: str,
        existing: StoredObject | None,
        replace: str | None,
        deadline: float | None,
        result: Callable[..., CopyResult],
    ) -> CopyResult:
        """The copy once the origin has answered: ``first`` is the open read of part 1."""
        if info.size > self.config.transfer.max_object_size:
            return result(
                CopyOutcome.TOO_LARGE,
                s3_key=s3_key,
                origin=target.origin,
                reason=f"{info.size} bytes exceeds copy.max_object_size",
            )
        fields: dict[str, Any] = {"s3_key": s3_key, "origin": target.origin}
        if info.size <= part_size_for(info.size, self.config.transfer.part_size):
            # The first check's verdict stands: existing is None, or the copy to replace.
            replacing = replace if existing is not None else None
            return self._copy_small(target, info, first, s3_key, replacing, result, fields)
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
            lease.start_heartbeat()
            resumed = self._copy_multipart(target, info, first, s3_key, lease, deadline, if_match)
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

    def _copy_small(
        self,
        target: Target,
        info: ObjectInfo,
        first: GetResult | None,
        s3_key: str,
        if_match: str | None,
        result: Callable[..., CopyResult],
        fields: dict[str, Any],
    ) -> CopyResult:
        """Copy an object that fits one PutObject, without a lease.

        The lease exists to share a long copy and to resume it; one PutObject has nothing
        to resume, and its ``If-None-Match: *`` (or, refreshing, ``If-Match``) already lets
        exactly one writer win. Copiers racing on one small object may each read it from the
        origin (at most one part each); S3 still ends up with exactly one copy and the others
        end ``exists``. Skipping the lease saves four S3 requests per object.
        """
        try:
            self._copy_single(target, info, first, s3_key, if_match)
        except Changed as exc:
            return result(CopyOutcome.EXISTS, reason=str(exc), **fields)
        except Exists:
            return result(CopyOutcome.EXISTS, **fields)
        except ObjectNotFound as exc:
            return result(
                CopyOutcome.NOT_FOUND, reason=f"vanished during the copy: {exc}", **fields
            )
        except PreconditionFailed:
            reason = "the origin object changed during the copy; a retry copies the new version"
            return result(CopyOutcome.FAILED, reason=reason, **fields)
        except BackoriginError as exc:  # origin, S3, integrity, secrets
            return result(CopyOutcome.FAILED, reason=str(exc), **fields)
        return result(CopyOutcome.COPIED, bytes=info.size, **fields)

    def close(self) -> None:
        """Release the adapters' connections."""
        with self._adapters_lock:
            for adapter in self._adapters.values():
                adapter.close()

    # --- steps --------------------------------------------------------------------------------

    def _open(
        self, route: Route, *, read: bool
    ) -> tuple[Target, ObjectInfo, GetResult | None] | None:
        """Find the object at the route's origins, in order; the first that has it.

        With ``read``, one GET of the whole object both describes it (its headers carry
        everything a HEAD would, whole-object digests included) and starts its body: all
        of it when the object fits one part, its first part otherwise (the rest of that
        answer is dropped; a resumed copy would drop up to a part, which is why only a
        caller that has just seen the key absent from a listing asks for this). Without
        ``read``, a HEAD describes it.
        """
        for target in route.targets:
            adapter = self.adapter(target.origin)
            try:
                if not read:
                    return target, adapter.head(target.key), None
                opened = adapter.get(target.key, GetOptions(), attempts=self.read_attempts)
                return target, opened.info, opened
            except ObjectNotFound:
                log.debug("%s not found at %s", target.key, target.origin)
        return None

    def _copy_single(
        self,
        target: Target,
        info: ObjectInfo,
        first: GetResult | None,
        s3_key: str,
        if_match: str | None = None,
    ) -> None:
        """One PutObject: create-only, or (``if_match``) replacing exactly that object."""
        data = bytearray(info.size)
        if first is not None:
            self._fill(first, memoryview(data))
        elif info.size:
            self._read_into(target, info, 0, memoryview(data))
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
        first: GetResult | None,
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
                first,
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
        first: GetResult | None,
        s3_key: str,
        upload_id: str,
        todo: list[Part],
        done: dict[int, tuple[str, bytes]],
        digests: ObjectDigests | None,
        lease: Lease,
        deadline: float | None,
    ) -> None:
        """Read and upload ``todo`` with ``concurrency`` workers, in a sliding window.

        Each part is read into a buffer of a fixed pool and uploaded from it. A new part
        starts as soon as a worker and a buffer are free, so one slow part does not hold
        the others back. Only when the origin states a digest are finished buffers kept
        until the parts before them are hashed (two spare buffers give that order some
        slack); otherwise a worker frees its buffer as soon as its upload returns. Memory
        is the pool: at most ``(concurrency + 2) x part_size``, whatever the object's size.
        """
        concurrency = self.config.transfer.concurrency
        part_size = todo[0].size if todo else 0
        hashing = digests is not None and digests.needs_bytes
        pool = BufferPool(max(part_size, 1), concurrency + (2 if hashing else 0))
        # Finished parts reach the lease in batches of about 1/20 of the object, so that a
        # copier killed at any moment leaves at most that much (plus the parts in flight)
        # to be read again, for a lease cost that does not grow with the number of parts.
        lease.flush_bytes = info.size // 20

        def work(part: Part, buffer: memoryview) -> tuple[Part, str, bytes, memoryview]:
            view = buffer[: part.size]
            try:
                if first is not None and part.start == 0:
                    self._fill(first, view)  # the answer that described the object
                    first.close()
                else:
                    self._read_into(target, info, part.start, view)
                crc = _crc_bytes(crc32c(view))
                etag = self.bucket.upload_part(s3_key, upload_id, part.number, view, crc)
            except BaseException:
                pool.give(buffer)
                raise
            if not hashing:
                pool.give(buffer)
            lease.record_part(part.number, base64.b64encode(crc).decode(), part.size)
            return part, etag, crc, buffer

        queue = iter(todo)
        upcoming = next(queue, None)
        hash_order = iter(todo)
        hash_next = next(hash_order, None)
        finished: dict[int, memoryview] = {}
        running: set[Future[tuple[Part, str, bytes, memoryview]]] = set()
        stopping = False
        with ThreadPoolExecutor(concurrency, thread_name_prefix="backorigin-part") as workers:
            try:
                while True:
                    while (
                        not stopping
                        and upcoming is not None
                        and len(running) < concurrency
                        and pool.available
                    ):
                        running.add(workers.submit(work, upcoming, pool.take()))
                        upcoming = next(queue, None)
                    if not running:
                        break
                    ready, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in ready:
                        running.discard(future)
                        part, etag, crc, buffer = future.result()
                        done[part.number] = (etag, crc)
                        if hashing:
                            finished[part.number] = buffer
                    while hash_next is not None and hash_next.number in finished:
                        assert digests is not None
                        buffer = finished.pop(hash_next.number)
                        digests.update(buffer[: hash_next.size])
                        pool.give(buffer)
                        hash_next = next(hash_order, None)
                    if deadline is not None and time.monotonic() > deadline and not stopping:
                        stopping = True
            except BaseException:
                for future in running:
                    future.cancel()
                raise
            finally:
                workers.shutdown(wait=True)
                pool.close()
        if digests is not None and not hashing:
            digests.size += sum(p.size for p in todo)
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

    def _read_into(self, target: Target, info: ObjectInfo, start: int, view: memoryview) -> None:
        """Fill ``view`` with the object's bytes from ``start`` on, pinned to its version.

        The shared read path resumes a body that fails transiently or ends early from its
        first missing byte, pinned to ``info``, up to ``read_attempts`` times.
        """
        options = GetOptions(range=ByteRange.bounded(start, start + len(view)), pin=info)
        with self.adapter(target.origin).get(
            target.key, options, attempts=self.read_attempts
        ) as result:
            self._fill(result, view)

    @staticmethod
    def _fill(result: GetResult, view: memoryview) -> None:
        """Fill ``view`` with the next bytes of ``result``, which must have that many."""
        if result.range[1] - result.position < len(view):
            raise IntegrityError(
                f"the origin served {result.size} bytes where {len(view)} were expected"
            )
        filled = 0
        while filled < len(view):
            count = result.readinto(view[filled:])
            if count == 0:
                raise IntegrityError("the origin's answer ended early")
            filled += count

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
