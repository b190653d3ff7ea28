"""Prewarm a key set in one call: :func:`prewarm`, the Python API behind ``backorigin prewarm``.

A run takes its keys from a list the caller gives or from a walk of the origins, and then,
in one of three modes:

* **local** (the default): copies every key here, through one copy engine and a pool of
  workers (:class:`~backorigin.prewarm.local.LocalPrewarm`); an object S3 already holds is
  skipped, and with a listing a copy of another version is reported ``stale``;
* **queue** (``queue_url``): sends each key as a copy job to the copy queue, ten per
  ``SendMessageBatch``, for the deployed fetchers; keys the serving path could not route are
  rejected first, since the fetcher could never copy them;
* **dry run** (``dry_run``): routes each key and reports it; reads nothing from S3, sends
  nothing.

The result is a :class:`PrewarmSummary`, like :func:`~backorigin.prewarm.status.status`'s
report and :func:`~backorigin.prewarm.reconcile.reconcile`'s summary.
"""

from __future__ import annotations

__all__ = ["PrewarmSummary", "prewarm"]

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from backorigin.adapters import OriginAdapter
from backorigin.config.models import Config
from backorigin.errors import BackoriginError, InvalidKey, ObjectNotFound
from backorigin.keys import Router, Target, is_reserved
from backorigin.prewarm.enqueue import Enqueuer, EnqueueTally, QueueUnusable, sqs_client_for
from backorigin.prewarm.keys_file import KeyWriter
from backorigin.prewarm.listing import Job, Walk
from backorigin.prewarm.local import LocalPrewarm, Outcome, Tally
from backorigin.prewarm.status import adapters_of
from backorigin.transfer import CopyEngine
from backorigin.transfer.access import check_bucket_access
from backorigin.types import RESERVED_PREFIX

log = logging.getLogger("backorigin.prewarm")

Mode = Literal["local", "queue", "dry_run"]
_EXAMPLES = 20


@dataclass
class PrewarmSummary:
    """What a prewarm run did; updated from several threads while it runs.

    Attributes:
        mode: ``"local"`` (copied here), ``"queue"`` (sent to the copy queue) or
            ``"dry_run"``.
        prefix: Only viewer keys starting with this were prewarmed.
        queue_url: The copy queue the jobs went to (queue mode).
        tally: Keys per outcome of a local run (a
            :class:`~backorigin.transfer.CopyOutcome` or a
            :class:`~backorigin.prewarm.local.Finding`), bytes copied and examples.
        sent: What a queue run sent: jobs accepted, jobs that could not be sent, calls made.
        planned: Jobs a dry run would copy or send.
        rejected: Keys the serving path cannot route (invalid, reserved, or no route): not
            sent (queue mode) or not planned (dry run).
        rejected_examples: Up to 20 ``(key, reason)`` of them.
        listing: The walk of the origins, when the keys came from one: objects listed,
            origins that could not be listed, origin objects no viewer key reaches.
        retry: Keys worth running again (failed, still held by another copier, or not
            sent), also written to ``failed_out``.
        seconds: Wall time of the run.
        interrupted: The run was stopped with Ctrl-C (``KeyboardInterrupt``); the copies in
            flight were finished.
        error: Why the run stopped early (the keys' source failed), if it did.
    """

    mode: Mode
    prefix: str = ""
    queue_url: str | None = None
    tally: Tally = field(default_factory=Tally)
    sent: EnqueueTally = field(default_factory=EnqueueTally)
    planned: int = 0
    rejected: int = 0
    rejected_examples: list[tuple[str, str]] = field(default_factory=list)
    listing: Walk | None = None
    retry: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reject(self, key: str, reason: str) -> None:
        """Count a key that cannot be routed."""
        with self._lock:
            self.rejected += 1
            if len(self.rejected_examples) < _EXAMPLES:
                self.rejected_examples.append((key, reason))

    @property
    def complete(self) -> bool:
        """Whether every key was taken: not interrupted, no source failed, every origin listed."""
        listed = self.listing is None or not self.listing.not_listable
        return not self.interrupted and self.error is None and listed

    @property
    def ok(self) -> bool:
        """Whether the run did all it was asked: complete, and every key copied or already in S3
        (local), sent (queue) or routable (dry run)."""
        if not self.complete or self.rejected:
            return False
        if self.mode == "local":
            return self.tally.ok
        if self.mode == "queue":
            return not self.sent.failed
        return True

    def as_dict(self) -> dict[str, Any]:
        """Every count, JSON-ready."""
        listing = self.listing
        return {
            "mode": self.mode,
            "prefix": self.prefix,
            "queue_url": self.queue_url,
            "ok": self.ok,
            "outcomes": {str(o): n for o, n in self.tally.counts.items()},
            "bytes_copied": self.tally.bytes,
            "sent": self.sent.sent,
            "send_failed": self.sent.failed,
            "send_calls": self.sent.batches,
            "planned": self.planned,
            "rejected": self.rejected,
            "retry": self.retry,
            "listed": listing.listed if listing is not None else None,
            "unreachable": listing.unreachable if listing is not None else None,
            "not_listable": dict(listing.not_listable) if listing is not None else {},
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "error": self.error,
        }


def prewarm(
    config: Config,
    prefix: str = "",
    *,
    keys: Iterable[str] | None = None,
    concurrency: int = 16,
    dry_run: bool = False,
    queue_url: str | None = None,
    sqs_client: Any = None,
    engine: CopyEngine | None = None,
    s3_client: Any = None,
    adapter: Callable[[str], OriginAdapter[Any]] | None = None,
    failed_out: str | Path | None = None,
    on_job: Callable[[Job, Target | None], None] | None = None,
    on_reject: Callable[[str, str], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    on_sent: Callable[[int, int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> PrewarmSummary:
    """Copy a key set into the bucket ahead of viewer requests, here or through the copy queue.

    Without ``keys`` the origins are listed and every object a viewer key under ``prefix``
    reaches becomes a job (routes, rewrites and fallbacks apply as on the serving path; an
    origin that cannot be listed, such as an HTTP server, is named in
    ``summary.listing.not_listable``). With ``keys``, those viewer keys are prewarmed (the
    ones starting with ``prefix``), read lazily.

    Running again after an interruption continues where the last run stopped: an object S3
    already holds is not copied again. Ctrl-C (``KeyboardInterrupt``) stops a run after the
    copies in flight; the summary says ``interrupted``.

    Args:
        config: The configuration (``bucket.name`` is required unless ``dry_run`` or
            ``queue_url``).
        prefix: Only viewer keys starting with this are prewarmed.
        keys: Viewer keys to prewarm instead of listing the origins.
        concurrency: Keys copied at once (local), or ``SendMessageBatch`` calls in flight.
        dry_run: Route every key and report it through ``on_job``; read nothing from S3 and
            send nothing.
        queue_url: Send copy jobs to this SQS copy queue instead of copying here.
        sqs_client: A boto3 SQS client for ``queue_url`` (default: one for the queue's region
            and endpoint, see :func:`~backorigin.prewarm.enqueue.sqs_client_for`).
        engine: The copy engine of a local run (built from the config when omitted, and then
            closed at the end).
        s3_client: The S3 client to build the engine with, when it is built here.
        adapter: Returns an origin's adapter by name, for listing (the engine's in a local
            run; otherwise built once per origin).
        failed_out: Write the keys worth running again here, one per line (the format
            :func:`~backorigin.prewarm.keys_file.read_keys` reads); never in a dry run.
        on_job: Called with each job as it is taken, and in dry runs and queue runs the
            origin and origin key the serving path routes it to (None in local runs, where the
            copy engine routes it).
        on_reject: Called with ``(key, reason)`` for each key a dry run or a queue run cannot
            route (a local run reports such keys as outcomes).
        on_outcome: Called with each key's outcome in a local run, from the worker threads.
        on_sent: Called with ``(sent, failed)`` after each batch of a queue run.
        on_total: Called once with the number of jobs as soon as it is known: at once when
            ``keys`` has a length, otherwise when the keys or the listing run out.

    Returns:
        What was done; :attr:`PrewarmSummary.ok` says whether it was all of it.

    Raises:
        BucketUnusable: A local run cannot use the bucket (no credentials, no such bucket,
            access denied, S3 not answering); checked once, before the first key.
        QueueUnusable: SQS refused a call as the sender's fault (no such queue, access denied):
            retrying cannot help. Jobs sent until then stay in the queue.
        ValueError: ``concurrency`` is below 1.

    Example:
        >>> summary = prewarm(load_config("backorigin.yaml"), "images/")  # doctest: +SKIP
        >>> summary.ok, summary.tally.counts[CopyOutcome.COPIED]  # doctest: +SKIP
        (True, 1250)
        >>> with open("keys.txt") as lines:  # doctest: +SKIP
        ...     sent = prewarm(config, keys=read_keys(lines), queue_url=QUEUE_URL)
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    mode: Mode = "dry_run" if dry_run else "queue" if queue_url is not None else "local"
    summary = PrewarmSummary(mode=mode, prefix=prefix, queue_url=queue_url)
    own_engine = mode == "local" and engine is None
    if own_engine:
        engine = CopyEngine(config, s3_client=s3_client)
    if adapter is None:
        adapter = engine.adapter if engine is not None else adapters_of(config)
    if keys is None:
        summary.listing = Walk(config, adapter, prefix)
    started = time.monotonic()
    try:
        if engine is not None and mode == "local":
            check_bucket_access(engine.bucket.client, engine.bucket.name)
        with KeyWriter(None if dry_run else failed_out) as failed:
            jobs = _jobs(summary, keys, prefix, on_total)
            try:
                if mode == "local":
                    assert engine is not None
                    _local(engine, jobs, concurrency, failed, summary, on_job, on_outcome)
                elif mode == "queue":
                    assert queue_url is not None
                    client = sqs_client or sqs_client_for(queue_url, concurrency)
                    routed = _routed(config, jobs, summary, on_job, on_reject)
                    _queue(
                        Enqueuer(client, queue_url), routed, concurrency, failed, summary, on_sent
                    )
                else:
                    for _ in _routed(config, jobs, summary, on_job, on_reject):
                        summary.planned += 1
            except KeyboardInterrupt:
                summary.interrupted = True
            except QueueUnusable:
                raise  # retrying cannot help: the caller must hear of it
            except BackoriginError as exc:  # a listing that failed in a dry run
                summary.error = f"{type(exc).__name__}: {exc}"
            summary.retry = failed.count
    finally:
        summary.seconds = time.monotonic() - started
        if own_engine and engine is not None:
            engine.close()
    return summary


def _jobs(
    summary: PrewarmSummary,
    keys: Iterable[str] | None,
    prefix: str,
    on_total: Callable[[int], None] | None,
) -> Iterator[Job]:
    """The jobs of the key list or the walk, reporting their number once it is known."""
    if keys is None:
        assert summary.listing is not None
        yield from summary.listing
        if on_total is not None:
            on_total(summary.listing.jobs)
        return
    if on_total is not None and isinstance(keys, Sized) and not prefix:
        on_total(len(keys))
        on_total = None
    count = 0
    for key in keys:
        if key.startswith(prefix):
            count += 1
            yield Job(key)
    if on_total is not None:
        on_total(count)


def _routed(
    config: Config,
    jobs: Iterator[Job],
    summary: PrewarmSummary,
    on_job: Callable[[Job, Target | None], None] | None,
    on_reject: Callable[[str, str], None] | None,
) -> Iterator[Job]:
    """The jobs the serving path can route; the others are rejected.

    The fetcher would fail an invalid key (and SQS retry it into the dead-letter queue) or
    find no route for it, so such keys are never sent.
    """
    router = Router(config)
    for job in jobs:
        if job.info is not None and job.origin is not None:
            target: Target | None = Target(job.origin, job.info.key)  # the walk routed it
        else:
            reason = f"keys under {RESERVED_PREFIX} are reserved" if is_reserved(job.key) else ""
            target = None
            if not reason:
                try:
                    target = router.route(job.key).primary
                except (InvalidKey, ObjectNotFound) as exc:
                    reason = str(exc)
            if target is None:
                summary.reject(job.key, reason)
                if on_reject is not None:
                    on_reject(job.key, reason)
                continue
        if on_job is not None:
            on_job(job, target)
        yield job


def _local(
    engine: CopyEngine,
    jobs: Iterator[Job],
    concurrency: int,
    failed: KeyWriter,
    summary: PrewarmSummary,
    on_job: Callable[[Job, Target | None], None] | None,
    on_outcome: Callable[[Outcome], None] | None,
) -> None:
    def taken(source: Iterator[Job]) -> Iterator[Job]:
        for job in source:
            if on_job is not None:
                on_job(job, None)
            yield job

    runner = LocalPrewarm(engine, concurrency=concurrency, failed=failed, on_outcome=on_outcome)
    summary.tally = runner.tally  # live: callbacks may read it while the run goes
    try:
        runner.run(taken(jobs))
    finally:
        summary.error = summary.error or runner.tally.error


def _queue(
    enqueuer: Enqueuer,
    jobs: Iterator[Job],
    concurrency: int,
    failed: KeyWriter,
    summary: PrewarmSummary,
    on_sent: Callable[[int, int], None] | None,
) -> None:
    sent = enqueuer.send_all(
        (job.key for job in jobs), concurrency=concurrency, failed=failed, on_batch=on_sent
    )
    summary.sent = sent
    summary.error = summary.error or sent.error
