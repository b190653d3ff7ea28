"""What ``serve`` has done: requests and bytes per source, copies by outcome, the copy queue.

The local server counts every viewer response by where it came from (:data:`SOURCES`): the
bucket (``s3``), the legacy origin through failover (``origin``), or generated without either
(``edge``: a refused key's 400, a route-less 404, a 502 for a function result CloudFront would
refuse, a 503 for a failing function, a 405 for a method other than GET and HEAD). The fetcher
threads count each copy attempt by its :class:`~backorigin.transfer.CopyOutcome`.

Counters are updated from the server's event loop and from fetcher threads, so one lock guards
them; an update is a dictionary lookup and a few integer additions under it, nothing else (the
notification that wakes :meth:`ServeCounters.wait_served` costs nothing when no one waits). A
response is counted once it has been sent, so a viewer may hold the whole body a moment before
its request is counted: wait with :meth:`ServeCounters.wait_served` rather than assume.
:meth:`ServeCounters.snapshot` returns an immutable :class:`ServeStats`, which the server shows
at its status endpoint (:meth:`ServeStats.as_dict`) and the ``serve`` command prints when it
stops (:meth:`ServeStats.summary`). The deployed distribution has neither: CloudFront's own
metrics and the construct's dashboard take their place.
"""

from __future__ import annotations

__all__ = ["SOURCES", "QueueStats", "ServeCounters", "ServeStats", "Source", "SourceStats"]

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from backorigin.config.units import format_size
from backorigin.transfer import CopyOutcome, CopyResult

Source = Literal["s3", "origin", "edge"]
"""Where a viewer response came from."""

SOURCES: tuple[Source, ...] = ("s3", "origin", "edge")


@dataclass(frozen=True, slots=True)
class SourceStats:
    """Viewer responses from one source.

    Attributes:
        requests: Responses sent.
        bytes: Body bytes sent to viewers.
        statuses: Responses per HTTP status code.
        collapsed: Responses that shared another request's origin response instead of asking
            the origin themselves (CloudFront's request collapsing; ``origin`` only).
    """

    requests: int
    bytes: int
    statuses: Mapping[int, int]
    collapsed: int = 0


@dataclass(frozen=True, slots=True)
class QueueStats:
    """The in-process copy queue.

    Attributes:
        depth: Jobs accepted and not yet finished or dead-lettered (waiting or in flight), like
            SQS's visible plus in-flight messages.
        in_flight: Jobs a fetcher thread is working on right now.
        enqueued: Jobs accepted since the queue started.
        dead_letters: Jobs given up after the last allowed delivery.
    """

    depth: int
    in_flight: int
    enqueued: int
    dead_letters: int


@dataclass(frozen=True, slots=True)
class ServeStats:
    """A consistent snapshot of what the local server has done.

    Attributes:
        uptime: Seconds since the counters were created.
        served: Viewer responses per source (every name of :data:`SOURCES`).
        copies: Copy attempts per outcome (every :class:`~backorigin.transfer.CopyOutcome`);
            a job retried after ``failed`` or ``in_progress`` counts once per attempt.
        copied_bytes: Bytes written to the bucket by ``copied`` copies.
        queue: The copy queue at the time of the snapshot.
    """

    uptime: float
    served: Mapping[Source, SourceStats]
    copies: Mapping[CopyOutcome, int]
    copied_bytes: int
    queue: QueueStats

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (status codes and outcomes as string keys)."""
        return {
            "uptime_seconds": round(self.uptime, 3),
            "served": {
                source: {
                    "requests": stats.requests,
                    "bytes": stats.bytes,
                    "statuses": {str(code): n for code, n in sorted(stats.statuses.items())},
                    "collapsed": stats.collapsed,
                }
                for source, stats in self.served.items()
            },
            "copies": {
                "outcomes": {outcome.value: n for outcome, n in self.copies.items()},
                "bytes": self.copied_bytes,
            },
            "queue": {
                "depth": self.queue.depth,
                "in_flight": self.queue.in_flight,
                "enqueued": self.queue.enqueued,
                "dead_letters": self.queue.dead_letters,
            },
        }

    def summary(self) -> str:
        """A few lines for people, as ``serve`` prints them when it stops."""
        labels = {"s3": "from s3", "origin": "from origin", "edge": "at the edge"}
        total = sum(stats.requests for stats in self.served.values())
        lines = [f"served {total} requests in {self.uptime:.0f} s:"]
        for source, stats in self.served.items():
            codes = ", ".join(f"{code}: {n}" for code, n in sorted(stats.statuses.items()))
            line = f"  {labels[source]:<12} {stats.requests:>8}  {format_size(stats.bytes):>10}"
            if codes:
                line += f"  ({codes})"
            if stats.collapsed:
                line += f", {stats.collapsed} collapsed"
            lines.append(line)
        outcomes = ", ".join(f"{outcome.value} {n}" for outcome, n in self.copies.items())
        lines.append(f"copies: {outcomes}; {format_size(self.copied_bytes)} copied")
        queue = self.queue
        lines.append(
            f"copy queue: {queue.enqueued} enqueued, {queue.depth} unfinished "
            f"({queue.in_flight} in flight), {queue.dead_letters} dead-lettered"
        )
        return "\n".join(lines)


class _Tally:
    """Mutable counts for one source; touched only under :class:`ServeCounters`' lock."""

    __slots__ = ("bytes", "collapsed", "requests", "statuses")

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.collapsed = 0
        self.statuses: dict[int, int] = {}


class ServeCounters:
    """Thread-safe counters of viewer responses and copies (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._total = 0
        self._started = time.monotonic()
        self._sources = {source: _Tally() for source in SOURCES}
        self._copies = dict.fromkeys(CopyOutcome, 0)
        self._copied_bytes = 0

    def served(self, source: Source, status: int, size: int, *, collapsed: bool = False) -> None:
        """Count one viewer response of ``size`` body bytes."""
        tally = self._sources[source]
        with self._lock:
            tally.requests += 1
            tally.bytes += size
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if collapsed:
                tally.collapsed += 1
            self._total += 1
            self._changed.notify_all()

    def wait_served(self, count: int, timeout: float | None = None) -> bool:
        """Wait until at least ``count`` viewer responses are counted; False on timeout."""
        with self._lock:
            return self._changed.wait_for(lambda: self._total >= count, timeout)

    def copied(self, result: CopyResult) -> None:
        """Count one copy attempt."""
        with self._lock:
            self._copies[result.outcome] += 1
            self._copied_bytes += result.bytes

    def snapshot(self, queue: QueueStats) -> ServeStats:
        """The counts so far, with ``queue`` (the copy queue's own stats) beside them."""
        with self._lock:
            served = {
                source: SourceStats(
                    requests=tally.requests,
                    bytes=tally.bytes,
                    statuses=MappingProxyType(dict(tally.statuses)),
                    collapsed=tally.collapsed,
                )
                for source, tally in self._sources.items()
            }
            copies = MappingProxyType(dict(self._copies))
            copied_bytes = self._copied_bytes
        return ServeStats(
            uptime=time.monotonic() - self._started,
            served=MappingProxyType(served),
            copies=copies,
            copied_bytes=copied_bytes,
            queue=queue,
        )
