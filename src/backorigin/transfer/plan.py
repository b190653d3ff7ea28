"""Splitting an object into multipart-upload parts within S3's limits."""

from __future__ import annotations

__all__ = ["MAX_PARTS", "Part", "part_size_for", "plan_parts"]

from dataclasses import dataclass

from backorigin.config.models import MAX_PART_SIZE, MIN_PART_SIZE

MAX_PARTS = 10_000
_MIB = 1024**2


@dataclass(frozen=True, slots=True)
class Part:
    """One part: S3 part number (1-based) and the half-open byte range it covers."""

    number: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        """Length in bytes."""
        return self.stop - self.start


def part_size_for(size: int, preferred: int) -> int:
    """The part size to use for an object of ``size`` bytes.

    The preferred size grows (in whole MiB) until the object fits in 10,000 parts, and stays
    within S3's 5 MiB..5 GiB bounds.
    """
    part = max(preferred, MIN_PART_SIZE)
    needed = -(-size // MAX_PARTS)  # ceil
    if needed > part:
        part = -(-needed // _MIB) * _MIB
    if part > MAX_PART_SIZE:
        raise ValueError(f"{size} bytes cannot be split into {MAX_PARTS} parts of at most 5 GiB")
    return part


def plan_parts(size: int, part_size: int) -> list[Part]:
    """The parts covering ``[0, size)``; the last one may be shorter."""
    return [
        Part(number=index + 1, start=start, stop=min(start + part_size, size))
        for index, start in enumerate(range(0, size, part_size))
    ]
