"""How far a migration has come: the origins and the bucket compared, object by object.

:func:`status` walks the origins' listings (through the routes' inverse mapping, see
:mod:`backorigin.prewarm.ordered`) and the bucket's listing side by side in one merge join,
and puts every object in one class:

* ``migrated`` — in the bucket and current (or written there by the application itself, which
  then serves that key: nothing is left to copy);
* ``missing`` — at the origin, not in the bucket;
* ``stale`` — a copy backorigin made whose origin object changed since: its size differs, or
  the version, ETag or modification time the copy recorded as provenance is older than the
  listing's;
* ``orphaned`` — a copy backorigin made (it carries the provenance) whose origin object is
  gone from every origin its key is served from;
* ``application`` — an object in the bucket without backorigin's provenance and no origin
  object behind it: the application's own, never orphaned and never touched;
* ``unchecked`` — a bucket object whose origin could not be asked (an origin that cannot be
  listed, a key no route serves any more), or a key of a keys file found nowhere.

Origin objects no viewer key reaches are counted as ``unreachable`` by the walk.

Requests: listing costs one request per page (1,000 keys) on each side. HEAD requests are
made only for *candidates*: a bucket object whose size differs from the origin's, or whose
origin object was modified after (or shortly before) the copy was written — the listing's
times say so — and every bucket object with no origin object (to read its provenance). A
bucket that is in step with its origins costs no HEAD at all.

Memory does not grow with the number of objects: both listings stream through a bounded
external sort (listings are not all in code-point order; one that fits in ``run_size`` entries
never touches the disk), the merge holds one entry per listing, and at most
``2 x concurrency`` HEADs are in flight.

Origins that cannot be listed (HTTP) are checked from a keys file instead: every key then
costs a HEAD at the bucket and one at the origin (per target tried).
"""

from __future__ import annotations

__all__ = ["Entry", "State", "StatusReport", "Survey", "adapters_of", "bucket_of", "status"]

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from operator import itemgetter
from typing import Any

from backorigin.adapters import OriginAdapter, create_adapter
from backorigin.config.models import Config
from backorigin.config.secrets import SecretResolver
from backorigin.errors import BackoriginError, InvalidKey, ObjectNotFound
from backorigin.keys import Router, bucket_key, is_reserved
from backorigin.prewarm.extsort import sorted_by_key
from backorigin.prewarm.listing import Job
from backorigin.prewarm.local import compare
from backorigin.prewarm.ordered import OrderedJob, OrderedWalk
from backorigin.transfer.access import check_bucket_access
from backorigin.transfer.bucket import Bucket, ListedObject, StoredObject, make_s3_client
from backorigin.types import PROVENANCE_PREFIX, RESERVED_PREFIX, ObjectInfo

_EXAMPLES = 20
RECENT = timedelta(minutes=5)
"""A copy written less than this long after its origin object's last modification is
confirmed with a HEAD: the origin may have changed while the copy ran, and clocks differ."""


class State(StrEnum):
    """The class of one object (see the module's description)."""

    MIGRATED = "migrated"
    MISSING = "missing"
    STALE = "stale"
    ORPHANED = "orphaned"
    APPLICATION = "application"
    UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class Entry:
    """One object's class.

    Attributes:
        key: The viewer key (the S3 key below the bucket prefix).
        state: Its class.
        size: Bytes counted for it: the origin's size where the origin has the object, the
            bucket's otherwise.
        origin: The origin the copy path reads it from, when an origin has it.
        etag: The ETag of the object in the bucket, when there is one (a refresh or a delete
            is conditional on it).
        reason: Why it is stale, orphaned or unchecked.
    """

    key: str
    state: State
    size: int = 0
    origin: str | None = None
    etag: str | None = None
    reason: str | None = None


@dataclass
class StatusReport:
    """Counts and bytes per class; updated live (from several threads) while the walk runs.

    Attributes:
        prefix: The viewer-key prefix examined.
        objects: Objects per class.
        bytes: Bytes per class.
        examples: Up to 20 ``(key, reason)`` per class other than ``migrated``.
        listed: Objects the origins listed.
        bucket_listed: Objects the bucket listed.
        unreachable: Origin objects no viewer key reaches.
        unreachable_bytes: Their sizes.
        unreachable_examples: A few ``(origin, origin key)`` of them.
        not_listable: Origins that could not be listed, with the reason.
        bucket_heads: HEAD requests made to the bucket.
        origin_heads: HEAD requests made to the origins.
        failures: Objects that could not be examined (a request failed).
        error: Why the walk stopped early, if it did.
    """

    prefix: str = ""
    objects: Counter[State] = field(default_factory=Counter)
    bytes: Counter[State] = field(default_factory=Counter)
    examples: dict[State, list[tuple[str, str]]] = field(default_factory=dict)
    listed: int = 0
    bucket_listed: int = 0
    unreachable: int = 0
    unreachable_bytes: int = 0
    unreachable_examples: list[tuple[str, str]] = field(default_factory=list)
    not_listable: dict[str, str] = field(default_factory=dict)
    bucket_heads: int = 0
    origin_heads: int = 0
    failures: int = 0
    failure_examples: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, entry: Entry) -> None:
        """Count ``entry``."""
        with self._lock:
            self.objects[entry.state] += 1
            self.bytes[entry.state] += entry.size
            if entry.state is not State.MIGRATED:
                kept = self.examples.setdefault(entry.state, [])
                if len(kept) < _EXAMPLES:
                    kept.append((entry.key, entry.reason or ""))

    def fail(self, key: str, reason: str) -> None:
        """Count an object that could not be examined."""
        with self._lock:
            self.failures += 1
            if len(self.failure_examples) < _EXAMPLES:
                self.failure_examples.append((key, reason))

    def count_heads(self, *, bucket: int = 0, origin: int = 0) -> None:
        """Count HEAD requests made."""
        with self._lock:
            self.bucket_heads += bucket
            self.origin_heads += origin

    @property
    def at_origin(self) -> int:
        """Viewer keys the origins hold (migrated, missing or stale)."""
        return sum(self.objects[s] for s in (State.MIGRATED, State.MISSING, State.STALE))

    @property
    def share_migrated(self) -> float:
        """The share of the origins' objects the bucket holds current copies of (1.0 if none)."""
        total = self.at_origin
        return self.objects[State.MIGRATED] / total if total else 1.0

    @property
    def ok(self) -> bool:
        """Whether everything could be examined (no error, failure or unlisted origin)."""
        return self.error is None and not self.failures and not self.not_listable

    @property
    def complete(self) -> bool:
        """Whether nothing is missing or stale, and everything could be examined."""
        return self.ok and not self.objects[State.MISSING] and not self.objects[State.STALE]

    def as_dict(self) -> dict[str, Any]:
        """Every count and byte total, JSON-ready."""
        classes = {
            state.value: {"objects": self.objects[state], "bytes": self.bytes[state]}
            for state in State
        }
        classes["unreachable"] = {"objects": self.unreachable, "bytes": self.unreachable_bytes}
        return {
            "prefix": self.prefix,
            "complete": self.complete,
            "share_migrated": round(self.share_migrated, 6),
            "classes": classes,
            "listed": self.listed,
            "bucket_listed": self.bucket_listed,
            "requests": {"bucket_heads": self.bucket_heads, "origin_heads": self.origin_heads},
            "not_listable": dict(self.not_listable),
            "failures": self.failures,
            "error": self.error,
            "examples": {s.value: [list(e) for e in ex] for s, ex in self.examples.items()},
            "unreachable_examples": [list(e) for e in self.unreachable_examples],
        }


def _has_provenance(stored: StoredObject) -> bool:
    return PROVENANCE_PREFIX + "origin" in stored.metadata


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def judge(stored: StoredObject, origin: str, info: ObjectInfo) -> str | None:
    """Why a copy backorigin made is stale against what the origin states, or None.

    The size, then the version or ETag the copy recorded (as prewarm compares them); when
    neither can be compared, the origin's modification time against the one the copy
    recorded (or, failing that, the time the copy was made).
    """
    why = compare(stored, Job(info.key, origin, info))
    if why is not None:
        return why
    metadata = stored.metadata
    if metadata.get(PROVENANCE_PREFIX + "origin") != origin:
        return None  # copied from another origin of the route: current, as for viewers
    version = metadata.get(PROVENANCE_PREFIX + "origin-version")
    etag = metadata.get(PROVENANCE_PREFIX + "origin-etag")
    if (version and info.version) or (etag and info.etag):
        return None  # compared above, and equal
    modified = info.last_modified
    recorded = _parse_time(metadata.get(PROVENANCE_PREFIX + "origin-last-modified"))
    copied = _parse_time(metadata.get(PROVENANCE_PREFIX + "copied-at"))
    if modified is not None and modified.tzinfo is not None:
        if recorded is not None and recorded.tzinfo is not None and modified > recorded:
            return f"the origin object was modified at {modified.isoformat()}, after {recorded}"
        if (
            recorded is None
            and copied is not None
            and copied.tzinfo is not None
            and modified > copied
        ):
            return f"the origin object was modified at {modified.isoformat()}, after the copy"
    return None


def _candidate(listed: ListedObject, info: ObjectInfo, recent: timedelta) -> bool:
    """Whether the listings leave the copy's freshness in doubt (worth a HEAD)."""
    if listed.size != info.size:
        return True
    modified, written = info.last_modified, listed.last_modified
    if modified is None or written is None:
        return False  # nothing more to compare without a HEAD; the size matches
    if modified.tzinfo is None or written.tzinfo is None:
        return True
    return modified > written - recent


class Survey:
    """One comparison of the origins with the bucket; :func:`status` runs one.

    Entries are handed to ``on_entry`` as they are classified, from the calling thread or
    from the HEAD workers, in no particular order. :attr:`report` is updated live.

    Args:
        config: The configuration (``bucket.name`` is required).
        prefix: Only viewer keys starting with this are examined.
        keys: Viewer keys to examine instead of listing the origins (for origins that cannot
            be listed); each costs a HEAD at the bucket and at the origin.
        bucket: The bucket (built from the config when omitted).
        adapter: Returns an origin's adapter by name (built from the config when omitted).
        concurrency: HEAD requests in flight at most (``2 x`` may be queued).
        recent: See :data:`RECENT`.
        run_size: Entries each listing sorts in memory before it spills a sorted run to a
            temporary file (see :mod:`backorigin.prewarm.extsort`).
        spill_dir: Where those files go (the system's temporary directory by default).
    """

    def __init__(
        self,
        config: Config,
        *,
        prefix: str = "",
        keys: Iterable[str] | None = None,
        bucket: Bucket | None = None,
        adapter: Callable[[str], OriginAdapter[Any]] | None = None,
        concurrency: int = 16,
        recent: timedelta = RECENT,
        run_size: int = 50_000,
        spill_dir: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if bucket is None:
            bucket = bucket_of(config, concurrency=concurrency)
        self.config = config
        self.prefix = prefix
        self.keys = keys
        self.bucket = bucket
        self.adapter = adapter if adapter is not None else adapters_of(config)
        self.concurrency = concurrency
        self.recent = recent
        self.router = Router(config)
        self.report = StatusReport(prefix=prefix)
        self.walk: OrderedWalk | None = (
            OrderedWalk(config, self.adapter, prefix, run_size=run_size, spill_dir=spill_dir)
            if keys is None
            else None
        )
        self._walked = self.walk.origins() if self.walk is not None else set()
        self.inflight = 0
        self.max_inflight = 0
        self._slots = threading.BoundedSemaphore(2 * concurrency)
        self._inflight_lock = threading.Lock()

    def run(self, on_entry: Callable[[Entry], None] | None = None) -> StatusReport:
        """Examine every object; returns :attr:`report`.

        A listing that fails stops the walk (:attr:`StatusReport.error` says why); the HEADs
        in flight finish first.

        Raises:
            BucketUnusable: The bucket cannot be used (no credentials, no such bucket, access
                denied, S3 not answering); checked once, before any listing.
        """
        check_bucket_access(self.bucket.client, self.bucket.name)

        def emit(entry: Entry) -> None:
            self.report.add(entry)
            if on_entry is not None:
                on_entry(entry)

        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="backorigin-status") as pool:
            try:
                if self.walk is not None:
                    self._merge(self.walk, pool, emit)
                else:
                    assert self.keys is not None
                    for key in self.keys:
                        if key.startswith(self.prefix):
                            self._submit(pool, emit, self._by_key, key)
            except BackoriginError as exc:  # a listing failed
                self.report.error = f"{type(exc).__name__}: {exc}"
        if self.walk is not None:
            self.report.listed = self.walk.listed
            self.report.unreachable = self.walk.unreachable
            self.report.unreachable_bytes = self.walk.unreachable_bytes
            self.report.unreachable_examples = list(self.walk.unreachable_examples)
            self.report.not_listable = dict(self.walk.not_listable)
        return self.report

    # --- the merge join -------------------------------------------------------------------

    def _merge(
        self, walk: OrderedWalk, pool: ThreadPoolExecutor, emit: Callable[[Entry], None]
    ) -> None:
        origin_side: Iterator[OrderedJob] = iter(walk)
        bucket_side = self._bucket_listing()
        job = next(origin_side, None)
        stored = next(bucket_side, None)
        while job is not None or stored is not None:
            if stored is None or (job is not None and job.key < stored.key):
                assert job is not None
                emit(Entry(job.key, State.MISSING, job.info.size, job.origin))
                job = next(origin_side, None)
            elif job is None or stored.key < job.key:
                self._submit(pool, emit, self._bucket_only, stored)
                stored = next(bucket_side, None)
            else:
                if _candidate(stored, job.info, self.recent):
                    self._submit(pool, emit, self._both, job, stored)
                else:
                    emit(Entry(job.key, State.MIGRATED, job.info.size, job.origin, stored.etag))
                job = next(origin_side, None)
                stored = next(bucket_side, None)

    def _bucket_listing(self) -> Iterator[ListedObject]:
        """The bucket's objects under the prefix, by viewer key, in code-point order.

        Amazon S3 lists in that order already; S3-compatible stores may not, so the listing
        goes through the same bounded sort as the origins'.
        """
        assert self.walk is not None

        def rows() -> Iterator[tuple[str, int, str, datetime | None]]:
            base = self.config.bucket.prefix
            for listed in self.bucket.list_objects(base + self.prefix):
                key = listed.key[len(base) :]
                if is_reserved(key):
                    continue  # the copy engine's leases
                self.report.bucket_listed += 1
                yield key, listed.size, listed.etag, listed.last_modified

        for row in sorted_by_key(
            rows(),
            itemgetter(0),
            run_size=self.walk.run_size,
            directory=self.walk.spill_dir,
            stats=self.walk.sort,
        ):
            yield ListedObject(*row)

    # --- HEADs, in the pool ---------------------------------------------------------------

    def _submit(
        self,
        pool: ThreadPoolExecutor,
        emit: Callable[[Entry], None],
        work: Callable[..., Entry | None],
        *args: Any,
    ) -> None:
        self._slots.acquire()  # bounded: the listings wait for the HEADs
        with self._inflight_lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        future: Future[Entry | None] = pool.submit(work, *args)
        key = args[0].key if hasattr(args[0], "key") else str(args[0])

        def done(finished: Future[Entry | None]) -> None:
            with self._inflight_lock:
                self.inflight -= 1
            self._slots.release()
            try:
                entry = finished.result()
            except Exception as exc:  # origin, S3, secrets; a bug is reported the same way
                self.report.fail(key, f"{type(exc).__name__}: {exc}")
                return
            if entry is not None:
                emit(entry)

        future.add_done_callback(done)

    def _head(self, key: str) -> StoredObject | None:
        self.report.count_heads(bucket=1)
        return self.bucket.head(bucket_key(self.config, key))

    def _both(self, job: OrderedJob, listed: ListedObject) -> Entry:
        stored = self._head(job.key)
        size = job.info.size
        if stored is None:  # removed since it was listed
            return Entry(job.key, State.MISSING, size, job.origin)
        if not _has_provenance(stored):
            return Entry(job.key, State.MIGRATED, size, job.origin, stored.etag)
        why = judge(stored, job.origin, job.info)
        if why is None:
            return Entry(job.key, State.MIGRATED, size, job.origin, stored.etag)
        return Entry(job.key, State.STALE, size, job.origin, stored.etag, why)

    def _bucket_only(self, listed: ListedObject) -> Entry | None:
        stored = self._head(listed.key)
        if stored is None:
            return None  # removed since it was listed
        if not _has_provenance(stored):
            return Entry(listed.key, State.APPLICATION, stored.size, etag=stored.etag)
        why = self._unanswerable(listed.key)
        if why is not None:
            return Entry(listed.key, State.UNCHECKED, stored.size, etag=stored.etag, reason=why)
        copied_from = stored.metadata.get(PROVENANCE_PREFIX + "origin")
        return Entry(
            listed.key,
            State.ORPHANED,
            stored.size,
            etag=stored.etag,
            reason=f"copied from {copied_from}; no origin has it any more",
        )

    def _unanswerable(self, key: str) -> str | None:
        """Why the origins' listings cannot tell whether ``key``'s origin object is gone."""
        try:
            targets = self.router.route(key).targets
        except (InvalidKey, ObjectNotFound) as exc:
            return f"no origin serves this key any more ({exc})"
        assert self.walk is not None
        for target in targets:
            if target.origin in self.walk.not_listable or target.origin not in self._walked:
                return f"origin {target.origin} was not listed"
        return None

    def _by_key(self, key: str) -> Entry:
        """Classify one key of a keys file: a HEAD at the bucket and at the origins."""
        try:
            route = self.router.route(key)
        except (InvalidKey, ObjectNotFound) as exc:
            return Entry(key, State.UNCHECKED, reason=str(exc))
        if is_reserved(key):
            return Entry(key, State.UNCHECKED, reason=f"keys under {RESERVED_PREFIX} are reserved")
        stored = self._head(key)
        found: tuple[str, ObjectInfo] | None = None
        for target in route.targets:
            self.report.count_heads(origin=1)
            try:
                found = target.origin, self.adapter(target.origin).head(target.key)
                break
            except ObjectNotFound:
                continue
        if found is None:
            if stored is None:
                return Entry(key, State.UNCHECKED, reason="neither an origin nor the bucket has it")
            if not _has_provenance(stored):
                return Entry(key, State.APPLICATION, stored.size, etag=stored.etag)
            return Entry(
                key,
                State.ORPHANED,
                stored.size,
                etag=stored.etag,
                reason="no origin has it any more",
            )
        origin, info = found
        if stored is None:
            return Entry(key, State.MISSING, info.size, origin)
        if not _has_provenance(stored):
            return Entry(key, State.MIGRATED, info.size, origin, stored.etag)
        why = judge(stored, origin, info)
        state = State.MIGRATED if why is None else State.STALE
        return Entry(key, state, info.size, origin, stored.etag, why)


def bucket_of(config: Config, s3_client: Any = None, *, concurrency: int = 16) -> Bucket:
    """The config's bucket, read through ``s3_client``.

    Args:
        config: The configuration (``bucket.name`` is required).
        s3_client: A boto3 S3 client (default: one built from the config, pooled for
            ``concurrency`` requests in flight).
        concurrency: Requests that will be in flight.

    Raises:
        ValueError: The config names no bucket.
    """
    if not config.bucket.name:
        raise ValueError("bucket.name must be set in the config")
    client = s3_client or make_s3_client(config.bucket, max_pool_connections=concurrency + 4)
    return Bucket(client, config.bucket.name)


def adapters_of(config: Config) -> Callable[[str], OriginAdapter[Any]]:
    """Builds each origin's adapter once, on first use (thread-safe)."""
    secrets = SecretResolver()
    built: dict[str, OriginAdapter[Any]] = {}
    lock = threading.Lock()

    def adapter(name: str) -> OriginAdapter[Any]:
        with lock:
            if name not in built:
                built[name] = create_adapter(config.origin(name), secrets=secrets)
            return built[name]

    return adapter


def status(
    config: Config,
    prefix: str = "",
    *,
    keys: Iterable[str] | None = None,
    concurrency: int = 16,
    bucket: Bucket | None = None,
    adapter: Callable[[str], OriginAdapter[Any]] | None = None,
    on_entry: Callable[[Entry], None] | None = None,
    recent: timedelta = RECENT,
) -> StatusReport:
    """Compare the origins with the bucket and count every class.

    Args:
        config: The configuration (``bucket.name`` is required).
        prefix: Only viewer keys starting with this are examined.
        keys: Viewer keys to examine instead of listing the origins (for origins that cannot
            be listed, such as HTTP servers).
        concurrency: HEAD requests in flight.
        bucket: The bucket to read (built from the config when omitted).
        adapter: Returns an origin's adapter by name (built from the config when omitted).
        on_entry: Called with every classified object, from any thread (progress display).
        recent: See :data:`RECENT`.

    Returns:
        The report; :attr:`StatusReport.complete` says whether the bucket holds a current
        copy of every origin object.

    Raises:
        BucketUnusable: The bucket cannot be used (no credentials, no such bucket, access
            denied, S3 not answering); checked once, before any listing.

    Example:
        >>> report = status(load_config("backorigin.yaml"), "images/")  # doctest: +SKIP
        >>> report.objects[State.MISSING], f"{report.share_migrated:.1%}"  # doctest: +SKIP
        (120, '97.3%')
    """
    survey = Survey(
        config,
        prefix=prefix,
        keys=keys,
        bucket=bucket,
        adapter=adapter,
        concurrency=concurrency,
        recent=recent,
    )
    return survey.run(on_entry)
