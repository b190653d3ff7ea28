"""A bounded external sort: any number of items in key order with at most ``run_size`` in memory.

Listings are not all in the order a merge join needs. S3 general purpose buckets list keys in
UTF-8 binary order (code-point order, Python's ``str`` order), but S3-compatible stores may
not (SeaweedFS lists a "directory" ``a/`` before the key ``a!``), and Azure Blob's listing
sorts as UTF-16 does (a character outside the Basic Multilingual Plane comes before U+FF5E).
So every listing goes through :func:`sorted_by_key`: a listing that fits in one run is sorted
in memory (no disk at all); a longer one is cut into sorted runs spilled to temporary files
and merged back in rounds of ``fan_in`` runs, so neither memory nor open files grow with the
number of items (at most ``run_size`` items, plus one per open run: ``fan_in - 1`` per round).
Disk use is about the pickled size of the items (around 100 bytes per object for status), and
each item is rewritten about ``log(items / run_size) / log(fan_in)`` times.
"""

from __future__ import annotations

__all__ = ["SortStats", "sorted_by_key"]

import heapq
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeVar

T = TypeVar("T")


@dataclass
class SortStats:
    """What the sorts sharing this object hold, for instrumentation.

    Attributes:
        held: Items in memory right now (run buffers, plus one per run being merged).
        max_held: The most ever held at once.
        spilled: Runs written to temporary files.
    """

    held: int = 0
    max_held: int = 0
    spilled: int = 0

    def change(self, delta: int) -> None:
        """Account ``delta`` more (or fewer) items held."""
        self.held += delta
        self.max_held = max(self.max_held, self.held)


def _spill(items: Iterable[Any], directory: str | None) -> IO[bytes]:
    file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed by the caller
    pickler = pickle.Pickler(file, protocol=pickle.HIGHEST_PROTOCOL)
    for item in items:
        pickler.dump(item)
        pickler.clear_memo()  # the memo would keep every item alive
    file.seek(0)
    return file


def _read(file: IO[bytes]) -> Iterator[Any]:
    unpickler = pickle.Unpickler(file)  # noqa: S301 - our own run, in an unlinked temp file
    while True:
        try:
            yield unpickler.load()
        except EOFError:
            return


def sorted_by_key(
    items: Iterable[T],
    key: Callable[[T], str],
    *,
    run_size: int = 50_000,
    fan_in: int = 64,
    directory: str | None = None,
    stats: SortStats | None = None,
) -> Iterator[T]:
    """``items`` in ascending ``key`` order (stable), with at most ``run_size`` in memory.

    Args:
        items: Picklable items (runs are spilled with :mod:`pickle`); read lazily.
        key: The sort key.
        run_size: Items sorted in memory at once; a longer input is spilled in runs.
        fan_in: Runs merged at once; every ``fan_in`` runs of one round are merged into one
            run of the next round.
        directory: Where temporary files go (the system's temporary directory by default).
        stats: Accounts what is held in memory.
    """
    if run_size < 1 or fan_in < 2:
        raise ValueError("run_size must be at least 1 and fan_in at least 2")
    stats = stats if stats is not None else SortStats()
    buffer: list[T] = []
    # levels[n]: runs made of fan_in**n buffers' worth; a full level is merged into one run of
    # the next, so every item is rewritten about log_fan_in(items / run_size) times.
    levels: list[list[IO[bytes]]] = []

    def add_run(run: IO[bytes], level: int) -> None:
        while True:
            if len(levels) == level:
                levels.append([])
            levels[level].append(run)
            if len(levels[level]) < fan_in:
                return
            full, levels[level] = levels[level], []
            stats.change(len(full))
            run = _spill(heapq.merge(*map(_read, full), key=key), directory)
            stats.change(-len(full))
            for done in full:
                done.close()
            level += 1

    try:
        for item in items:
            buffer.append(item)
            stats.change(1)
            if len(buffer) >= run_size:
                buffer.sort(key=key)
                stats.spilled += 1
                add_run(_spill(buffer, directory), 0)
                stats.change(-len(buffer))
                buffer = []
        buffer.sort(key=key)
        runs = [run for level in levels for run in level]
        if not runs:
            for item in buffer:
                yield item
                stats.change(-1)
            return
        stats.change(len(runs))
        yield from heapq.merge(*map(_read, runs), iter(buffer), key=key)
        stats.change(-len(runs) - len(buffer))
    finally:
        for level in levels:
            for run in level:
                run.close()
