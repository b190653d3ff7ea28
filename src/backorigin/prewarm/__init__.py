"""Prewarm: copy a whole key set into S3 ahead of viewer requests, locally or through SQS.

* :class:`Walk` lists the origins and maps origin keys back to viewer keys through the
  routes' rewrites (see :mod:`backorigin.prewarm.listing` for the rules);
* :class:`LocalPrewarm` copies jobs with worker threads through one copy engine, skipping what
  S3 already holds and reporting stale copies;
* :class:`Enqueuer` sends the jobs to the copy queue in batches of ten, for the deployed
  fetchers.

The ``backorigin prewarm`` command (:mod:`backorigin.cli.prewarm`) puts them together.
"""

from backorigin.prewarm.enqueue import (
    BATCH_SIZE,
    Enqueuer,
    EnqueueTally,
    QueueUnusable,
    job_body,
)
from backorigin.prewarm.keys_file import KeyWriter, count_keys, read_keys
from backorigin.prewarm.listing import Job, Scan, Walk, plan_scans, routable, viewer_keys
from backorigin.prewarm.local import LocalPrewarm, Outcome, Status, Tally, compare

__all__ = [
    "BATCH_SIZE",
    "EnqueueTally",
    "Enqueuer",
    "Job",
    "KeyWriter",
    "LocalPrewarm",
    "Outcome",
    "QueueUnusable",
    "Scan",
    "Status",
    "Tally",
    "Walk",
    "compare",
    "count_keys",
    "job_body",
    "plan_scans",
    "read_keys",
    "routable",
    "viewer_keys",
]
