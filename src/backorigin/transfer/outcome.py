"""What a copy ended as."""

from __future__ import annotations

__all__ = ["CopyOutcome", "CopyResult"]

from dataclasses import dataclass
from enum import StrEnum


class CopyOutcome(StrEnum):
    """How one copy ended.

    ``copied`` and ``exists`` are successes; ``not_found`` and ``too_large`` are final (retrying
    cannot help); ``in_progress`` means another copier holds the key right now; ``failed`` may
    succeed when retried (``CopyResult.reason`` says why it failed).
    """

    COPIED = "copied"
    EXISTS = "exists"
    IN_PROGRESS = "in_progress"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    FAILED = "failed"

    @property
    def ok(self) -> bool:
        """Whether the object is (now) in S3."""
        return self in (CopyOutcome.COPIED, CopyOutcome.EXISTS)

    @property
    def final(self) -> bool:
        """Whether retrying the same copy can change the outcome."""
        return self is not CopyOutcome.FAILED and self is not CopyOutcome.IN_PROGRESS


@dataclass(frozen=True, slots=True)
class CopyResult:
    """The result of copying one key.

    Attributes:
        key: The requested key.
        outcome: How the copy ended.
        bytes: Bytes written to S3 by this copy (0 unless ``copied``).
        seconds: Wall time spent.
        origin: Name of the origin the object came from, when one was found.
        s3_key: The key in the bucket (with the bucket prefix).
        reason: Why the copy failed (or why it was not attempted).
        resumed_parts: Parts taken over from an interrupted earlier copy.
    """

    key: str
    outcome: CopyOutcome
    bytes: int = 0
    seconds: float = 0.0
    origin: str | None = None
    s3_key: str | None = None
    reason: str | None = None
    resumed_parts: int = 0
