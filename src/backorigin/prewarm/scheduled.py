"""The scheduled reconciler: a Lambda function that runs :func:`reconcile` through the queue.

EventBridge Scheduler invokes it in the bucket's region (``{"prefix": P}``, or ``{}`` for every
key); it walks the origins and the bucket as ``backorigin reconcile --queue-url`` does, sends
copies and refreshes to the copy queue for the fetchers, applies the delete policy itself, and
prints its counts as CloudWatch EMF metrics (namespace ``backorigin``, service
``backorigin-reconciler``) with one JSON summary line.

A Lambda invocation lasts at most 15 minutes. The walk stops :data:`SAFETY_SECONDS` before the
function's deadline and reports itself unfinished (``ReconcileUnfinished`` = 1, the last key
examined in the summary); what it had found by then is already enqueued, and the next run
starts from the beginning of its prefix again. Split a key space that one invocation cannot
walk into several prefixes (one schedule each): see docs/SCALE.md.

The handler is ``backorigin.prewarm.scheduled.reconciler``, in a fetcher bundle built with
``include=("prewarm",)``; it reads the baked config, and the queue's URL and the delete policy
from the environment (``BACKORIGIN_QUEUE_URL``, ``BACKORIGIN_DELETES``): a regional function,
unlike Lambda@Edge, has environment variables.
"""

from __future__ import annotations

__all__ = [
    "RECONCILER_METRICS",
    "SAFETY_SECONDS",
    "Reconciler",
    "WalkInterrupted",
    "make_reconciler",
    "reconciler",
]

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from backorigin.config.models import Config
from backorigin.errors import BackoriginError
from backorigin.prewarm.enqueue import sqs_client_for
from backorigin.prewarm.reconcile import Action, ActionResult, Deletes, reconcile
from backorigin.prewarm.status import Entry, State

SAFETY_SECONDS = 60.0
"""The walk stops this long before the function's timeout, leaving time to send what it
decided and to report."""
NAMESPACE = "backorigin"
SERVICE = "backorigin-reconciler"
RECONCILER_METRICS = (
    "ReconcileMissing",
    "ReconcileStale",
    "ReconcileOrphaned",
    "ReconcileJobsEnqueued",
    "ReconcileDeleted",
    "ReconcileFailures",
    "ReconcileUnfinished",
    "ShareMigrated",
)
"""What each run emits: objects found missing, stale and orphaned; copy and refresh jobs sent;
orphaned copies deleted; actions that failed; 1 when the walk stopped at the deadline or on an
error (else 0); and the share of the origins' objects the bucket holds current copies of."""


class WalkInterrupted(BackoriginError):
    """The walk was stopped before the function's deadline (the message names the last key)."""


class Reconciler:
    """The scheduled reconciler for one config; call it with ``(event, context)``.

    Build it with :func:`make_reconciler`.
    """

    def __init__(
        self,
        config: Config,
        *,
        queue_url: str,
        sqs_client: Any,
        deletes: Deletes,
        s3_client: Any,
        metrics: Callable[[str], None],
        clock: Callable[[], float],
        concurrency: int,
    ) -> None:
        self.config = config
        self.queue_url = queue_url
        self.sqs_client = sqs_client
        self.deletes = deletes
        self.s3_client = s3_client
        self.metrics = metrics
        self.clock = clock
        self.concurrency = concurrency

    def __call__(self, event: dict[str, Any] | None, context: Any = None) -> dict[str, Any]:
        prefix = (event or {}).get("prefix", "")
        if not isinstance(prefix, str):
            raise ValueError('expected {"prefix": "..."} (or {} for every key)')
        deadline = None
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining):
            deadline = self.clock() + remaining() / 1000 - SAFETY_SECONDS
        walker = threading.get_ident()
        last = {"key": ""}

        def watch(entry: Entry) -> None:
            # Only the walking thread stops the walk: an exception raised where a HEAD's
            # result arrives (a pool thread) would not reach the walk.
            if threading.get_ident() != walker:
                return
            last["key"] = entry.key
            if deadline is not None and self.clock() > deadline:
                raise WalkInterrupted(
                    f"stopped {SAFETY_SECONDS:g} s before the function's timeout, after "
                    f"{entry.key!r}; the next run walks the prefix again"
                )

        summary = reconcile(
            self.config,
            prefix,
            deletes=self.deletes,
            queue_url=self.queue_url,
            sqs_client=self.sqs_client,
            s3_client=self.s3_client,
            concurrency=self.concurrency,
            on_entry=watch,
        )
        report = summary.status
        finished = report.error is None
        enqueued = summary.count(ActionResult.ENQUEUED)
        counts: dict[str, float] = {
            "ReconcileMissing": report.objects[State.MISSING],
            "ReconcileStale": report.objects[State.STALE],
            "ReconcileOrphaned": report.objects[State.ORPHANED],
            "ReconcileJobsEnqueued": enqueued,
            "ReconcileDeleted": summary.count(ActionResult.DONE, Action.DELETE),
            "ReconcileFailures": summary.count(ActionResult.FAILED) + report.failures,
            "ReconcileUnfinished": 0 if finished else 1,
            "ShareMigrated": round(report.share_migrated, 6),
        }
        self.metrics(_emf(counts, prefix))
        result = {
            "prefix": prefix,
            "finished": finished,
            "last_key": last["key"],
            **summary.as_dict(),
        }
        self.metrics(json.dumps({"message": "reconcile finished", **result}, default=str))
        return result


def _emf(counts: dict[str, float], prefix: str) -> str:
    """One CloudWatch embedded metric format line; the prefix is a property, not a dimension
    (a dimension per prefix would make a metric per prefix)."""
    units = {"ShareMigrated": "None"}
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": [["service"]],
                        "Metrics": [
                            {"Name": name, "Unit": units.get(name, "Count")} for name in counts
                        ],
                    }
                ],
            },
            "service": SERVICE,
            "prefix": prefix,
            **counts,
        },
        separators=(",", ":"),
    )


def make_reconciler(
    config: Config,
    *,
    queue_url: str,
    sqs_client: Any = None,
    deletes: Deletes = "keep",
    s3_client: Any = None,
    metrics: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    concurrency: int = 16,
) -> Reconciler:
    """Build the scheduled reconciler for ``config``.

    Args:
        config: The validated configuration (``bucket.name`` required).
        queue_url: The copy queue copies and refreshes are sent to.
        sqs_client: A boto3 SQS client (default: one for the queue's region, see
            :func:`~backorigin.prewarm.enqueue.sqs_client_for`).
        deletes: The delete policy for orphaned copies (see :func:`reconcile`).
        s3_client: The S3 client for the bucket (default: built from the config).
        metrics: Receives the EMF line and the JSON summary (default: printed, which is
            how a Lambda function writes to its log group).
        clock: Monotonic clock for the deadline.
        concurrency: HEADs and SendMessageBatch calls in flight.
    """
    return Reconciler(
        config,
        queue_url=queue_url,
        sqs_client=sqs_client or sqs_client_for(queue_url, concurrency),
        deletes=deletes,
        s3_client=s3_client,
        metrics=metrics,
        clock=clock,
        concurrency=concurrency,
    )


_lock = threading.Lock()
_built: list[Reconciler] = []


def _from_bundle() -> Reconciler:
    from backorigin.bundling import BAKED_DIR
    from backorigin.config import load_config
    from backorigin.plugins import adapter_plugins

    baked = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), BAKED_DIR)

    def read(name: str) -> Any:
        with open(os.path.join(baked, name), encoding="utf-8") as file:
            return json.load(file)

    # A bundle carries no package metadata: its adapters were resolved when it was built.
    adapter_plugins.use_only(read("bundle.json")["adapters"])
    deletes = os.environ.get("BACKORIGIN_DELETES", "keep")
    if deletes not in ("keep", "delete"):
        raise ValueError(f"BACKORIGIN_DELETES must be keep or delete, not {deletes!r}")
    return make_reconciler(
        load_config(read("config.json")),
        queue_url=os.environ["BACKORIGIN_QUEUE_URL"],
        deletes="delete" if deletes == "delete" else "keep",
    )


def reconciler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """The Lambda handler EventBridge Scheduler invokes (``{"prefix": P}`` or ``{}``)."""
    with _lock:
        if not _built:
            _built.append(_from_bundle())
    return _built[0](event, context)
