"""Local prewarm: a pool of worker threads copying jobs through one shared copy engine.

Re-running after an interruption continues where the last run stopped, without a journal: an
object already in S3 costs no origin request, since the engine only ever creates complete,
verified objects. What S3 holds is learnt from a listing of the bucket per batch of keys
(:mod:`backorigin.prewarm.destination`), not from a HEAD per key; so a key S3 lacks costs one
origin read and one PutObject, and a key S3 has costs nothing more, or one HEAD where a listed
job's provenance must be compared. For listed jobs the S3 object is also
compared with what the origin listed (size, and the provenance the engine recorded: origin,
version, ETag); a copy of an older version is reported ``stale`` and left alone, because the
engine never overwrites.

A key another copier holds a lease on (``in_progress``: a fetcher Lambda, or the previous run
killed mid-copy) is tried again after a pause until about twice ``copy.lease_ttl`` has passed,
the time a dead copier's lease needs to expire.
"""

from __future__ import annotations

__all__ = ["Finding", "KeyOutcome", "LocalPrewarm", "Outcome", "Tally", "compare", "held_key_retry"]

import heapq
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum

from backorigin.config.models import Config
from backorigin.errors import InvalidKey, ObjectNotFound
from backorigin.keys import RESERVED_PREFIX, bucket_key, is_reserved
from backorigin.prewarm.destination import BATCH, DestinationIndex
from backorigin.prewarm.keys_file import KeyWriter
from backorigin.prewarm.listing import Job
from backorigin.transfer import CopyEngine, CopyOutcome
from backorigin.transfer.bucket import BucketError, StoredObject
from backorigin.transfer.engine import PROVENANCE_PREFIX

log = logging.getLogger("backorigin.prewarm")

_EXAMPLES = 20
_UNKNOWN = -1  # a key no listing answered for


class Finding(StrEnum):
    """What prewarm can find about a key besides the copy engine's outcomes.

    A key's prewarm ends in a :class:`~backorigin.transfer.CopyOutcome` (``copied``,
    ``exists``, ``not_found``, ``too_large``, ``in_progress``, ``failed``) or in one of these:

    * ``stale``: S3 holds a copy of another version than the origin lists; prewarm never
      overwrites it (``reconcile`` refreshes stale copies);
    * ``invalid``: a key no viewer can request (it fails validation or lies under the reserved
      prefix); the engine would call it ``failed``, but retrying cannot help, so it is kept out
      of the retry list.

    Both share :class:`~backorigin.transfer.CopyOutcome`'s ``ok`` and ``final``, so an
    outcome of either kind is judged the same way.
    """

    STALE = "stale"
    INVALID = "invalid"

    @property
    def ok(self) -> bool:
        """Whether S3 now holds an up-to-date copy: never, for a finding."""
        return False

    @property
    def final(self) -> bool:
        """Whether running the key again can change the outcome: it cannot."""
        return True


KeyOutcome = CopyOutcome | Finding
"""How prewarming one key ended: a copy outcome, or a :class:`Finding`."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of prewarming one key."""

    key: str
    status: KeyOutcome
    bytes: int = 0
    seconds: float = 0.0
    reason: str | None = None


@dataclass
class Tally:
    """Counts of a run, updated from the worker threads.

    Attributes:
        counts: Keys per outcome.
        bytes: Bytes copied into S3.
        examples: Up to 20 ``(key, reason)`` per outcome that is not ``ok``.
        error: Why the run stopped early (e.g. a listing failed), if it did.
    """

    counts: Counter[KeyOutcome] = field(default_factory=Counter)
    bytes: int = 0
    examples: dict[KeyOutcome, list[tuple[str, str]]] = field(default_factory=dict)
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def done(self) -> int:
        """Keys finished so far."""
        return sum(self.counts.values())

    @property
    def ok(self) -> bool:
        """Whether every key ended ``copied`` or ``exists`` and nothing stopped the run."""
        return self.error is None and all(s.ok for s, n in self.counts.items() if n)

    def add(self, outcome: Outcome) -> None:
        """Count ``outcome``."""
        with self._lock:
            self.counts[outcome.status] += 1
            self.bytes += outcome.bytes
            if not outcome.status.ok:
                kept = self.examples.setdefault(outcome.status, [])
                if len(kept) < _EXAMPLES:
                    kept.append((outcome.key, outcome.reason or ""))


def _etag(value: str) -> str:
    return value.removeprefix("W/").strip('"')


def compare(stored: StoredObject, job: Job) -> str | None:
    """Why the S3 object is not a copy of the object the origin listed, or None if it is.

    A copy made from another origin of the route (its ``backorigin-origin`` provenance names
    the primary while a fallback listed the job) is what a viewer request would have made too,
    so it counts as current. Otherwise the size must match and, for copies the engine made,
    the origin version or ETag it recorded; an object written to S3 by other means can only be
    judged by its size. Matching ETags count as the same content even when the version tokens
    differ (an S3 origin lists ETags while HEAD also states the VersionId).
    """
    info = job.info
    if info is None:
        return None
    metadata = stored.metadata
    copied_from = metadata.get(PROVENANCE_PREFIX + "origin")
    if copied_from is not None and copied_from != job.origin:
        return None  # copied from another origin of the route: the primary wins, as for viewers
    if stored.size != info.size:
        return f"S3 holds {stored.size} bytes; the origin lists {info.size}"
    if copied_from is None:
        return None  # written to S3 by other means: the size is all there is to compare
    version = metadata.get(PROVENANCE_PREFIX + "origin-version")
    etag = metadata.get(PROVENANCE_PREFIX + "origin-etag")
    if version is not None and info.version is not None and version == info.version:
        return None
    if etag is not None and info.etag is not None and _etag(etag) == _etag(info.etag):
        return None
    if (version is None or info.version is None) and (etag is None or info.etag is None):
        return None  # nothing to compare beyond the size
    return (
        f"S3 holds version {version or etag} copied from {job.origin}; "
        f"the origin now lists {info.version or info.etag}"
    )


def held_key_retry(config: Config) -> tuple[float, float]:
    """How often, and for how long, a key whose lease another copier holds is tried again.

    Every quarter of ``copy.lease_ttl`` (between 0.5 and 5 s), for twice the TTL plus 5 s:
    long enough for a live copier to finish or for a dead one's lease to expire and be taken
    over. Returns ``(interval, window)`` in seconds.
    """
    ttl = float(config.transfer.lease_ttl)
    return min(max(ttl / 4, 0.5), 5.0), 2 * ttl + 5


@dataclass(order=True)
class _Retry:
    due: float
    seq: int
    job: Job = field(compare=False)
    give_up: float = field(compare=False)


class LocalPrewarm:
    """Copies jobs with ``concurrency`` threads through one :class:`CopyEngine`.

    Args:
        engine: The copy engine (shared by every worker; it is thread-safe).
        concurrency: Keys copied at once.
        failed: Receives the keys worth retrying (``failed``, and ``in_progress`` still held
            when the retry window closed).
        on_outcome: Called from the worker threads with each final outcome (progress display).
        retry_window: How long a key that stays ``in_progress`` is retried (default: twice
            ``copy.lease_ttl`` plus 5 s).
        clock: Monotonic clock (tests pass their own).
        list_destination: Learn what the bucket holds from listings, a batch of keys at a
            time, instead of a HEAD per key.
    """

    def __init__(
        self,
        engine: CopyEngine,
        *,
        concurrency: int = 16,
        failed: KeyWriter | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        retry_window: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        list_destination: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.engine = engine
        self.concurrency = concurrency
        self.failed = failed if failed is not None else KeyWriter(None)
        self.on_outcome = on_outcome
        interval, window = held_key_retry(engine.config)
        self.retry_window = retry_window if retry_window is not None else window
        self.retry_interval = interval
        self.tally = Tally()
        self._clock = clock
        self._cv = threading.Condition()
        self._inflight = 0
        self._retries: list[_Retry] = []
        self._seq = itertools.count()
        self.destination = DestinationIndex(engine.bucket) if list_destination else None
        # What the last listing said about keys not yet taken by a worker: the S3 size, or
        # None for absent. A key is looked up once; a retry asks S3 again.
        self._known: dict[str, int | None] = {}

    # --- one key ------------------------------------------------------------------------------

    def prewarm(self, job: Job) -> Outcome:
        """Prewarm one key: compare a listed object with S3, copy it when it is missing."""
        started = time.monotonic()
        if is_reserved(job.key):
            return Outcome(
                job.key, Finding.INVALID, reason=f"keys under {RESERVED_PREFIX} are reserved"
            )
        try:
            self.engine.router.route(job.key)
        except InvalidKey as exc:
            return Outcome(job.key, Finding.INVALID, reason=str(exc))
        except ObjectNotFound:
            pass  # no route: the engine reports it as not_found
        s3_key = bucket_key(self.engine.config, job.key)
        listed = self._known.pop(s3_key, _UNKNOWN)
        absent = listed is None
        if listed is not None and listed != _UNKNOWN and job.info is None:
            return Outcome(job.key, CopyOutcome.EXISTS, seconds=time.monotonic() - started)
        if job.info is not None and not absent:
            try:
                stored = self.engine.bucket.head(s3_key)
            except BucketError as exc:
                return Outcome(job.key, CopyOutcome.FAILED, reason=str(exc))
            if stored is not None:
                why = compare(stored, job)
                status = CopyOutcome.EXISTS if why is None else Finding.STALE
                return Outcome(job.key, status, seconds=time.monotonic() - started, reason=why)
            absent = True
        result = self.engine.copy(job.key, absent=absent)
        return Outcome(
            job.key,
            result.outcome,
            bytes=result.bytes if result.outcome is CopyOutcome.COPIED else 0,
            seconds=result.seconds,
            reason=result.reason,
        )

    # --- the pool -----------------------------------------------------------------------------

    def run(self, jobs: Iterable[Job]) -> Tally:
        """Prewarm every job; returns the tally (also kept in :attr:`tally`).

        An exception raised by ``jobs`` itself (a listing that failed) stops the run: the
        copies in flight finish and :attr:`Tally.error` says why. ``KeyboardInterrupt`` stops
        it the same way and is re-raised.
        """
        source: Iterator[Job] = self._looked_up(iter(jobs))
        exhausted = False
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="backorigin-prewarm") as pool:
            try:
                while True:
                    with self._cv:
                        # Keep at most 2 x concurrency jobs queued: bounded memory, busy workers.
                        while self._inflight >= 2 * self.concurrency:
                            self._cv.wait()
                        retry = self._due_retry()
                        job = retry.job if retry else None
                        give_up = retry.give_up if retry else None
                    if job is None and not exhausted:
                        try:
                            job = next(source)
                        except StopIteration:
                            exhausted = True
                        except Exception as exc:
                            log.error("stopping: %s", exc)
                            self.tally.error = f"{type(exc).__name__}: {exc}"
                            exhausted = True
                    if job is None:
                        with self._cv:
                            if exhausted and not self._retries and self._inflight == 0:
                                break
                            self._cv.wait(self._wait_time())
                        continue
                    with self._cv:
                        self._inflight += 1
                    pool.submit(self._work, job, give_up)
            except BaseException as exc:
                with self._cv:
                    self._retries.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                if isinstance(exc, KeyboardInterrupt):
                    # Say why the process does not exit at once: a copy in flight may be
                    # a large object, and finishing it is what makes the re-run skip it.
                    log.warning("interrupted: finishing the copies in flight, starting no more")
                pool.shutdown(wait=True)
                raise
        return self.tally

    def _looked_up(self, jobs: Iterator[Job]) -> Iterator[Job]:
        """``jobs`` in batches, each looked up in one listing of the bucket first.

        An exception raised by ``jobs`` is re-raised after the jobs taken before it.
        """
        if self.destination is None:
            yield from jobs
            return
        while True:
            batch: list[Job] = []
            error: Exception | None = None
            try:
                for job in jobs:
                    batch.append(job)
                    if len(batch) >= BATCH:
                        break
            except Exception as exc:
                error = exc
            if batch and self.destination.enabled:
                keys = [bucket_key(self.engine.config, job.key) for job in batch]
                found = self.destination.lookup(keys)
                if found is not None:
                    self._known.update(found)
            yield from batch
            if error is not None:
                raise error
            if len(batch) < BATCH:
                return

    def _due_retry(self) -> _Retry | None:
        if self._retries and self._retries[0].due <= self._clock():
            return heapq.heappop(self._retries)
        return None

    def _wait_time(self) -> float | None:
        if self._retries:
            return max(0.0, self._retries[0].due - self._clock())
        return None if self._inflight else 0.0

    def _work(self, job: Job, give_up: float | None) -> None:
        try:
            outcome = self.prewarm(job)
        except Exception as exc:  # the engine does not raise; anything here is a bug to report
            log.exception("prewarming %s failed unexpectedly", job.key)
            outcome = Outcome(job.key, CopyOutcome.FAILED, reason=f"{type(exc).__name__}: {exc}")
        now = self._clock()
        if outcome.status is CopyOutcome.IN_PROGRESS:
            limit = give_up if give_up is not None else now + self.retry_window
            if now + self.retry_interval <= limit:
                with self._cv:
                    retry = _Retry(now + self.retry_interval, next(self._seq), job, limit)
                    heapq.heappush(self._retries, retry)
                    self._inflight -= 1
                    self._cv.notify_all()
                return
        self.tally.add(outcome)
        if not outcome.status.final:  # failed, or still in progress: worth another run
            self.failed.write(outcome.key)
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:
                log.exception("the progress callback failed")
        with self._cv:
            self._inflight -= 1
            self._cv.notify_all()
