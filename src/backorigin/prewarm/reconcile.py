"""Bring the bucket in step with the origins: copy what is missing, refresh what is stale.

:func:`reconcile` runs the comparison of :func:`~backorigin.prewarm.status.status` and acts on
each object as it is classified:

* ``missing`` → copied through the copy engine (create-only, as every copy);
* ``stale`` → refreshed: the copy engine replaces the copy with the origin's current object,
  conditional on the stale copy's ETag (``If-Match``), so an object the application wrote over
  the copy since it was examined is left alone (the outcome says ``refused``);
* ``orphaned`` → with ``deletes="delete"``, deleted conditional on its ETag — and only copies
  that carry backorigin's provenance are ever classified orphaned; with ``"keep"`` (the
  default) left in place.

Objects the application wrote into the bucket itself (no provenance) are never overwritten or
deleted. With ``queue_url`` the copies and refreshes are sent to the copy queue instead, for
the deployed fetchers (a refresh job names the ETag to replace: ``{"key": K, "replace": E}``);
deletes are made from here either way (one request each). With ``dry_run`` nothing is
written or sent: :attr:`ReconcileSummary.planned` and ``on_action`` say what would be done.
"""

from __future__ import annotations

__all__ = ["Action", "ActionResult", "Deletes", "ReconcileSummary", "reconcile"]

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal

from backorigin.adapters import OriginAdapter
from backorigin.config.models import Config
from backorigin.keys import bucket_key
from backorigin.prewarm.enqueue import BATCH_SIZE, Enqueuer, sqs_client_for
from backorigin.prewarm.local import held_key_retry
from backorigin.prewarm.status import RECENT, Entry, State, StatusReport, bucket_of, status
from backorigin.transfer import CopyEngine, CopyOutcome
from backorigin.transfer.bucket import Bucket, BucketError
from backorigin.transfer.job import CopyJob

log = logging.getLogger("backorigin.prewarm")

Deletes = Literal["keep", "delete"]
_EXAMPLES = 20


class Action(StrEnum):
    """What reconcile does to one object."""

    COPY = "copy"
    REFRESH = "refresh"
    DELETE = "delete"


class ActionResult(StrEnum):
    """How an action ended.

    ``done``: copied, refreshed or deleted; ``enqueued``: sent to the copy queue;
    ``refused``: the object in the bucket changed since it was examined (or was not
    backorigin's copy), so it was left alone; ``failed``: may succeed when run again;
    ``planned``: a dry run.
    """

    DONE = "done"
    ENQUEUED = "enqueued"
    REFUSED = "refused"
    FAILED = "failed"
    PLANNED = "planned"


@dataclass
class ReconcileSummary:
    """What a reconcile run found and did; updated from several threads while it runs.

    Attributes:
        status: The comparison the actions were based on (as before the run).
        planned: Actions decided, per kind.
        results: ``(action, result)`` counts.
        bytes_copied: Bytes written by local copies and refreshes.
        examples: Up to 20 ``(action, key, reason)`` of actions refused or failed.
        dry_run: Nothing was written or sent.
        deletes: The delete policy applied.
        queue_url: The copy queue the jobs went to, if any.
    """

    status: StatusReport
    planned: Counter[Action] = field(default_factory=Counter)
    results: Counter[tuple[Action, ActionResult]] = field(default_factory=Counter)
    bytes_copied: int = 0
    examples: list[tuple[Action, str, str]] = field(default_factory=list)
    dry_run: bool = False
    deletes: Deletes = "keep"
    queue_url: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def plan(self, action: Action) -> None:
        """Count one action decided."""
        with self._lock:
            self.planned[action] += 1

    def add_bytes(self, count: int) -> None:
        """Count bytes written by a copy or refresh."""
        with self._lock:
            self.bytes_copied += count

    def record(self, action: Action, key: str, result: ActionResult, reason: str = "") -> None:
        """Count one action's result."""
        with self._lock:
            self.results[(action, result)] += 1
            bad = result in (ActionResult.REFUSED, ActionResult.FAILED)
            if bad and len(self.examples) < _EXAMPLES:
                self.examples.append((action, key, reason))

    def count(self, result: ActionResult, action: Action | None = None) -> int:
        """Actions that ended ``result`` (of one kind, or of every kind)."""
        return sum(n for (a, r), n in self.results.items() if r is result and action in (None, a))

    @property
    def ok(self) -> bool:
        """Whether the walk was complete and no action failed (refusals are not failures:
        they protect the application's objects)."""
        return self.status.ok and not self.count(ActionResult.FAILED)

    def as_dict(self) -> dict[str, Any]:
        """Every count, JSON-ready."""
        return {
            "dry_run": self.dry_run,
            "deletes": self.deletes,
            "queue_url": self.queue_url,
            "planned": {a.value: self.planned[a] for a in Action},
            "results": {
                a.value: {r.value: self.results[(a, r)] for r in ActionResult} for a in Action
            },
            "bytes_copied": self.bytes_copied,
            "examples": [[a.value, k, r] for a, k, r in self.examples],
            "status": self.status.as_dict(),
        }


def _plan(entry: Entry, deletes: Deletes) -> Action | None:
    if entry.state is State.MISSING:
        return Action.COPY
    if entry.state is State.STALE and entry.etag:
        return Action.REFRESH
    if entry.state is State.ORPHANED and deletes == "delete" and entry.etag:
        return Action.DELETE
    return None


class _Batcher:
    """Collects queue jobs into batches of ten and sends each batch from the pool."""

    def __init__(
        self, enqueuer: Enqueuer, summary: ReconcileSummary, submit: Callable[..., None]
    ) -> None:
        self.enqueuer = enqueuer
        self.summary = summary
        self.submit = submit
        self.pending: list[tuple[Action, str, str | None]] = []
        self.lock = threading.Lock()

    def add(self, action: Action, key: str, replace: str | None) -> None:
        with self.lock:
            self.pending.append((action, key, replace))
            if len(self.pending) < BATCH_SIZE:
                return
            batch, self.pending = self.pending, []
        self.submit(self._send, batch)

    def flush(self) -> None:
        with self.lock:
            batch, self.pending = self.pending, []
        if batch:
            self._send(batch)

    def _send(self, batch: list[tuple[Action, str, str | None]]) -> None:
        try:
            failures, _ = self.enqueuer.send_batch([CopyJob(key, etag) for _, key, etag in batch])
        except Exception as exc:  # QueueUnusable, or a bug: these jobs were not sent
            failures = [(key, f"{type(exc).__name__}: {exc}") for _, key, _ in batch]
        failed = dict(failures)
        for action, key, _ in batch:
            if key in failed:
                self.summary.record(action, key, ActionResult.FAILED, failed[key])
            else:
                self.summary.record(action, key, ActionResult.ENQUEUED)


def reconcile(
    config: Config,
    prefix: str = "",
    *,
    keys: Iterable[str] | None = None,
    deletes: Deletes = "keep",
    dry_run: bool = False,
    queue_url: str | None = None,
    sqs_client: Any = None,
    engine: CopyEngine | None = None,
    s3_client: Any = None,
    adapter: Callable[[str], OriginAdapter[Any]] | None = None,
    concurrency: int = 16,
    on_action: Callable[[Action, Entry], None] | None = None,
    on_entry: Callable[[Entry], None] | None = None,
    recent: timedelta = RECENT,
) -> ReconcileSummary:
    """Copy what is missing, refresh what is stale and apply the delete policy.

    A local copy of a key whose lease another copier holds is tried again, as prewarm does
    (:func:`~backorigin.prewarm.local.held_key_retry`), until that copy is done or its lease
    has expired and been taken over.

    Args:
        config: The configuration (``bucket.name`` is required).
        prefix: Only viewer keys starting with this are reconciled.
        keys: Viewer keys to reconcile instead of listing the origins (HTTP origins).
        deletes: ``"keep"`` leaves orphaned copies in place; ``"delete"`` deletes them (only
            copies with backorigin's provenance, each conditional on its ETag).
        dry_run: Decide, but write and send nothing.
        queue_url: Send copies and refreshes to this copy queue instead of copying here.
        sqs_client: A boto3 SQS client for ``queue_url`` (default: one for the queue's region
            and endpoint, see :func:`~backorigin.prewarm.enqueue.sqs_client_for`).
        engine: The copy engine for local copies (built from the config when omitted).
        s3_client: The S3 client to build the engine and bucket with, when they are built here.
        adapter: Returns an origin's adapter by name (the engine's when omitted).
        concurrency: Copies (or SendMessageBatch calls) and HEADs in flight.
        on_action: Called with each action decided, before it runs (progress, dry-run
            listing), from any thread.
        on_entry: Called with every classified object, from any thread.
        recent: See :data:`backorigin.prewarm.status.RECENT`.

    Returns:
        What was found and done.

    Raises:
        BucketUnusable: The bucket cannot be used (no credentials, no such bucket, access
            denied, S3 not answering); checked once, before anything is listed or done.

    Example:
        >>> summary = reconcile(config, "images/", deletes="delete")  # doctest: +SKIP
        >>> summary.count(ActionResult.DONE, Action.REFRESH)  # doctest: +SKIP
        3
    """
    if deletes not in ("keep", "delete"):
        raise ValueError('deletes must be "keep" or "delete"')
    if queue_url is not None and sqs_client is None and not dry_run:
        sqs_client = sqs_client_for(queue_url, concurrency)
    own_engine = engine is None and queue_url is None and not dry_run
    if own_engine:
        engine = CopyEngine(config, s3_client=s3_client)
    if engine is not None:
        bucket = engine.bucket
        adapter = adapter if adapter is not None else engine.adapter
    else:
        bucket = bucket_of(config, s3_client, concurrency=concurrency)
    summary = ReconcileSummary(
        status=StatusReport(prefix=prefix), dry_run=dry_run, deletes=deletes, queue_url=queue_url
    )
    slots = threading.BoundedSemaphore(2 * concurrency)

    try:
        with ThreadPoolExecutor(concurrency, thread_name_prefix="backorigin-reconcile") as pool:

            def submit(work: Callable[..., None], *args: Any) -> None:
                slots.acquire()  # bounded: the walk waits for the actions

                def run() -> None:
                    try:
                        work(*args)
                    except Exception:
                        log.exception("a reconcile action failed unexpectedly")
                    finally:
                        slots.release()

                pool.submit(run)

            batcher = (
                _Batcher(Enqueuer(sqs_client, queue_url), summary, submit)
                if queue_url is not None and not dry_run
                else None
            )

            def act(entry: Entry) -> None:
                if on_entry is not None:
                    on_entry(entry)
                action = _plan(entry, deletes)
                if action is None:
                    return
                summary.plan(action)
                if on_action is not None:
                    on_action(action, entry)
                if dry_run:
                    summary.record(action, entry.key, ActionResult.PLANNED)
                elif action is Action.DELETE:
                    submit(_delete, bucket, config, entry, summary)
                elif batcher is not None:
                    batcher.add(action, entry.key, entry.etag if action is Action.REFRESH else None)
                else:
                    assert engine is not None
                    submit(_copy, engine, action, entry, summary)

            try:
                summary.status = status(
                    config,
                    prefix,
                    keys=keys,
                    concurrency=concurrency,
                    bucket=bucket,
                    adapter=adapter,
                    on_entry=act,
                    recent=recent,
                )
            finally:
                if batcher is not None:
                    batcher.flush()
    finally:
        if own_engine and engine is not None:
            engine.close()
    return summary


def _copy(engine: CopyEngine, action: Action, entry: Entry, summary: ReconcileSummary) -> None:
    replace = entry.etag if action is Action.REFRESH else None
    result = engine.copy(entry.key, replace=replace)
    interval, window = held_key_retry(engine.config)
    give_up = time.monotonic() + window
    while result.outcome is CopyOutcome.IN_PROGRESS and time.monotonic() + interval <= give_up:
        # Another copier holds the key's lease (a viewer's miss, a fetcher): its copy finishes
        # or its lease expires and is taken over, so a later attempt settles the key, as
        # prewarm's retries do. This worker waits meanwhile; held keys are rare.
        time.sleep(interval)
        result = engine.copy(entry.key, replace=replace)
    if result.outcome is CopyOutcome.COPIED:
        summary.add_bytes(result.bytes)
        summary.record(action, entry.key, ActionResult.DONE)
    elif result.outcome is CopyOutcome.EXISTS and (action is Action.COPY or result.reason is None):
        # Created by a viewer request's copy meanwhile: the object is there, current.
        summary.record(action, entry.key, ActionResult.DONE)
    elif result.outcome is CopyOutcome.EXISTS:
        summary.record(action, entry.key, ActionResult.REFUSED, result.reason or "")
    else:
        reason = f"{result.outcome.value}: {result.reason or ''}".rstrip(": ")
        summary.record(action, entry.key, ActionResult.FAILED, reason)


def _delete(bucket: Bucket, config: Config, entry: Entry, summary: ReconcileSummary) -> None:
    assert entry.etag is not None
    try:
        deleted = bucket.delete_if_match(bucket_key(config, entry.key), entry.etag)
    except BucketError as exc:
        summary.record(Action.DELETE, entry.key, ActionResult.FAILED, str(exc))
        return
    if deleted:
        summary.record(Action.DELETE, entry.key, ActionResult.DONE)
    else:
        summary.record(
            Action.DELETE,
            entry.key,
            ActionResult.REFUSED,
            "the object in S3 changed since it was examined; left alone",
        )
