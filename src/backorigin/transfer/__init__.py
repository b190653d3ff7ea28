"""The copy engine: origin → S3, streamed, verified, create-only, single-flight, resumable.

Also the copy job (:class:`CopyJob`), the message the edge function, prewarm and reconcile
send to the copy queue and the fetcher reads. Names are imported on first use: the edge
function builds copy jobs on its miss path and must not pay for the engine (boto3, awscrt).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at a cold start
if TYPE_CHECKING:
    from backorigin.transfer.engine import CopyEngine, IntegrityError
    from backorigin.transfer.job import CopyJob, MalformedJob, queue_region
    from backorigin.transfer.outcome import CopyOutcome, CopyResult

__all__ = [
    "CopyEngine",
    "CopyJob",
    "CopyOutcome",
    "CopyResult",
    "IntegrityError",
    "MalformedJob",
    "queue_region",
]

_HOMES = {
    "CopyEngine": "engine",
    "IntegrityError": "engine",
    "CopyJob": "job",
    "MalformedJob": "job",
    "queue_region": "job",
    "CopyOutcome": "outcome",
    "CopyResult": "outcome",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'backorigin.transfer' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"backorigin.transfer.{home}"), name)
