"""Prewarm: copy a whole key set into S3 ahead of viewer requests, locally or through SQS.

Three functions make the Python API, each taking the config and a viewer-key prefix (or
``keys=``) and returning one summary:

* :func:`prewarm` copies a key set here, or sends it to the copy queue
  (:class:`PrewarmSummary`);
* :func:`status` compares the origins with the bucket in one streaming pass and counts what
  is migrated, missing, stale and orphaned (:class:`StatusReport`);
* :func:`reconcile` copies what is missing, refreshes stale copies and applies the delete
  policy, locally or through the copy queue (:class:`ReconcileSummary`).

Their parts, for callers that need less:

* :class:`Walk` lists the origins and maps origin keys back to viewer keys through the
  routes' rewrites (see :mod:`backorigin.prewarm.listing` for the rules);
* :class:`LocalPrewarm` copies jobs with worker threads through one copy engine, skipping what
  S3 already holds and reporting stale copies;
* :class:`Enqueuer` sends the jobs to the copy queue in batches of ten, for the deployed
  fetchers.

The ``backorigin prewarm``, ``status`` and ``reconcile`` commands (:mod:`backorigin.cli`)
parse arguments, call these and print.
"""

from backorigin.prewarm.bulk import PrewarmSummary, prewarm
from backorigin.prewarm.enqueue import (
    BATCH_SIZE,
    Enqueuer,
    EnqueueTally,
    QueueUnusable,
    sqs_client_for,
)
from backorigin.prewarm.keys_file import KeyWriter, count_keys, read_keys
from backorigin.prewarm.listing import Job, Scan, Walk, plan_scans, routable, viewer_keys
from backorigin.prewarm.local import Finding, KeyOutcome, LocalPrewarm, Outcome, Tally, compare
from backorigin.prewarm.ordered import OrderedJob, OrderedWalk
from backorigin.prewarm.reconcile import (
    Action,
    ActionResult,
    Deletes,
    ReconcileSummary,
    reconcile,
)
from backorigin.prewarm.status import Entry, State, StatusReport, Survey, status
from backorigin.transfer.access import BucketUnusable

__all__ = [
    "BATCH_SIZE",
    "Action",
    "ActionResult",
    "BucketUnusable",
    "Deletes",
    "EnqueueTally",
    "Enqueuer",
    "Entry",
    "Finding",
    "Job",
    "KeyOutcome",
    "KeyWriter",
    "LocalPrewarm",
    "OrderedJob",
    "OrderedWalk",
    "Outcome",
    "PrewarmSummary",
    "QueueUnusable",
    "ReconcileSummary",
    "Scan",
    "State",
    "StatusReport",
    "Survey",
    "Tally",
    "Walk",
    "compare",
    "count_keys",
    "plan_scans",
    "prewarm",
    "read_keys",
    "reconcile",
    "routable",
    "sqs_client_for",
    "status",
    "viewer_keys",
]
