"""The origins' listings in viewer-key order, for a streaming comparison with the bucket.

``status`` and ``reconcile`` compare two listings side by side — what the origins hold and what
the bucket holds — with a merge join, so that memory does not grow with the number of objects.
A merge join needs both sides in the same order. The bucket's side is S3's own listing (keys
in UTF-8 binary order, which is also the order of Python's ``str`` comparison). The origins'
side must come out in *viewer*-key order, while origins list in their own key order.

The routes' rewrites are prefix swaps (``strip_prefix`` then ``add_prefix``), and a prefix swap
preserves order: origin keys ``add + rest`` in sorted order map to viewer keys ``strip + rest``
in sorted order. So this module lists once per *stream* — one route's rewrite applied to one
of its origins — where each stream's mapping is monotone, and merges the streams with a heap
holding one pending entry per stream.

Listings themselves are not all in code-point order (Azure Blob sorts as UTF-16 does, some
S3-compatible stores list "directories" first), so each stream passes through a bounded
external sort (:mod:`backorigin.prewarm.extsort`): in memory when it fits in one run, spilled
to temporary files in sorted runs otherwise. State is bounded by the number of streams (a
property of the config) times the run size, never by the number of objects.

The mapping is the same as :class:`~backorigin.prewarm.listing.Walk` 's: candidates come from
inverting the rewrites (its helpers are reused) and are kept only if the serving path's own
:class:`~backorigin.keys.Router` sends that viewer key to that origin object. Where several
streams produce one viewer key (a route's primary and its fallbacks, or two routes sharing an
origin), the one the copy path would read first wins, as for a viewer request.

The cost of the guarantee: an origin prefix that several rewrites read is listed once per
rewrite (a catch-all route with ``strip_prefix`` is listed twice: once for the viewer keys
that carry the prefix and once for those that do not). Listing costs one request per 1,000
objects or so, a small price next to a HEAD per object.

"""

from __future__ import annotations

__all__ = ["OrderedJob", "OrderedWalk", "Stream", "plan_streams"]

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter

from backorigin.config.models import Config
from backorigin.errors import NotSupported
from backorigin.keys import Router, Target, is_reserved
from backorigin.prewarm.extsort import SortStats, sorted_by_key
from backorigin.prewarm.listing import (
    WalkCounts,
    _inverse,
    _rules_under,
    _targets,
    viewer_keys,
)
from backorigin.types import ObjectInfo


@dataclass(frozen=True, slots=True)
class Stream:
    """One listing: an origin, the origin prefix to list, and the rewrite to invert.

    Attributes:
        origin: The origin to list.
        prefix: The origin-side key prefix to list.
        strip: The route's ``strip_prefix``.
        add: The route's ``add_prefix``.
        keep_strip: True for the viewer keys that carried ``strip`` (``strip + rest``); False
            for the viewer keys that never had it (``rest``), which a route with a prefix to
            strip serves too when they do not start with it.
    """

    origin: str
    prefix: str
    strip: str
    add: str
    keep_strip: bool

    def viewer_key(self, origin_key: str) -> str | None:
        """The viewer key this stream maps ``origin_key`` to (None when it maps none)."""
        return _inverse(origin_key, self.strip, self.add, keep_strip=self.keep_strip)


@dataclass(frozen=True, slots=True)
class OrderedJob:
    """One viewer key the origins hold, with what the first origin to serve it listed.

    Attributes:
        key: The viewer key (the S3 key below the bucket prefix).
        origin: The origin the copy path reads it from.
        info: What that origin listed; its ``key`` is the origin-side key.
    """

    key: str
    origin: str
    info: ObjectInfo


def plan_streams(config: Config, prefix: str = "") -> list[Stream]:
    """The listings whose merge yields every viewer key under ``prefix`` in order.

    One stream per route, origin of the route (primary, then fallbacks) and kind of viewer
    key; identical streams, and streams a shorter prefix with the same mapping covers, are
    listed once.
    """
    streams: list[Stream] = []
    for rule, viewer in _rules_under(config, prefix):
        kinds = [(True, rule.origin_prefix(viewer))]
        if rule.strip and not viewer.startswith(rule.strip):
            kinds.append((False, rule.add + viewer))
        for origin in rule.origins:
            for keep_strip, origin_prefix in kinds:
                stream = Stream(origin, origin_prefix, rule.strip, rule.add, keep_strip)
                if stream not in streams:
                    streams.append(stream)
    # A stream whose listing a shorter prefix with the same mapping already covers adds only
    # duplicates (e.g. a route's fallback that is also the catch-all route's origin).
    return [
        stream
        for stream in streams
        if not any(
            other is not stream
            and (other.origin, other.strip, other.add, other.keep_strip)
            == (stream.origin, stream.strip, stream.add, stream.keep_strip)
            and stream.prefix.startswith(other.prefix)
            and (other.prefix != stream.prefix)
            for other in streams
        )
    ]


@dataclass
class OrderedWalk(WalkCounts):
    """Lists the origins and yields :class:`OrderedJob` s in viewer-key order, each key once.

    Iterate it once; the counters (:class:`~backorigin.prewarm.listing.WalkCounts`) move as
    it goes, ``listed`` counting each object once even if several streams read it.
    ``max_buffered`` and :attr:`sort` show the state: at most one pending entry per stream in
    the merge, and at most ``run_size`` per stream in the sorts, whatever the number of
    objects.

    Args:
        run_size: Entries a stream sorts in memory before it spills a run to disk.
        spill_dir: Where spilled runs go (the system's temporary directory by default).

    Attributes:
        buffered: Entries the merge holds right now.
        max_buffered: The most it ever held.
        sort: What the streams' sorts hold in memory and spilled.
    """

    run_size: int = 50_000
    spill_dir: str | None = None
    buffered: int = 0
    max_buffered: int = 0
    sort: SortStats = field(default_factory=SortStats)

    def streams(self) -> list[Stream]:
        """The listings this walk runs."""
        return plan_streams(self.config, self.prefix)

    def origins(self) -> set[str]:
        """The origins this walk lists (some may turn out not listable)."""
        return {stream.origin for stream in self.streams()}

    def __iter__(self) -> Iterator[OrderedJob]:
        router = Router(self.config)
        streams = self.streams()
        sources = [
            sorted_by_key(
                self._stream(index, streams, router),
                itemgetter(0),
                run_size=self.run_size,
                directory=self.spill_dir,
                stats=self.sort,
            )
            for index in range(len(streams))
        ]
        heap: list[tuple[str, int, int, OrderedJob]] = []

        def pull(index: int) -> None:
            item = next(sources[index], None)
            if item is not None:
                key, rank, origin_key, size, etag, version, modified = item
                info = ObjectInfo(origin_key, size, etag, version, modified)
                job = OrderedJob(key, streams[index].origin, info)
                heapq.heappush(heap, (key, rank, index, job))
            self.buffered = len(heap)
            self.max_buffered = max(self.max_buffered, self.buffered)

        for index in range(len(sources)):
            pull(index)
        last: str | None = None
        while heap:
            key, _, index, job = heapq.heappop(heap)
            pull(index)
            if key == last:
                self.duplicates += 1
                continue
            last = key
            self.jobs += 1
            self.bytes += job.info.size
            yield job

    def _stream(self, index: int, streams: list[Stream], router: Router) -> Iterator[_Row]:
        """The stream's objects in listing order, as picklable rows for the sort.

        A row: viewer key, the target's rank in the route, origin key, size, ETag, version,
        last modified.
        """
        stream = streams[index]
        if stream.origin in self.not_listable:
            return
        # The first stream of an origin whose prefix covers an object counts it (listed,
        # unreachable), so that an object several streams read is counted once.
        earlier = [s.prefix for s in streams[:index] if s.origin == stream.origin and s != stream]
        started = False
        try:
            for info in self.adapter(stream.origin).list(stream.prefix):
                started = True
                if not any(info.key.startswith(p) for p in earlier):
                    self._count(stream.origin, info, router)
                key = stream.viewer_key(info.key)
                if key is None or not key.startswith(self.prefix) or is_reserved(key):
                    continue
                rank = _rank(router, key, Target(stream.origin, info.key))
                if rank is not None:
                    yield (
                        key,
                        rank,
                        info.key,
                        info.size,
                        info.etag,
                        info.version,
                        info.last_modified,
                    )
        except NotSupported as exc:
            if started:
                raise
            self._skip_origin(stream.origin, exc)

    def _count(self, origin: str, info: ObjectInfo, router: Router) -> None:
        self.listed += 1
        keys = [k for k in viewer_keys(self.config, router, origin, info.key) if k]
        if not any(k.startswith(self.prefix) for k in keys):
            self._skip_unreachable(origin, info)


_Row = tuple[str, int, str, int, str | None, str | None, datetime | None]


def _rank(router: Router, key: str, target: Target) -> int | None:
    """Where ``target`` stands among the targets the serving path tries for ``key``."""
    targets = _targets(router, key)
    return targets.index(target) if target in targets else None
