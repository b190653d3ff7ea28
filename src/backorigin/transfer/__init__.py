"""The copy engine: origin → S3, streamed, verified, create-only, single-flight, resumable."""

from backorigin.transfer.engine import CopyEngine, IntegrityError
from backorigin.transfer.outcome import CopyOutcome, CopyResult

__all__ = ["CopyEngine", "CopyOutcome", "CopyResult", "IntegrityError"]
