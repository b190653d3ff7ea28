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
holding one pending entry per stream. State is bounded by the number of streams (a property
of the config), never by the number of objects.

The mapping is the same as :class:`~backorigin.prewarm.listing.Walk` 's: candidates come from
inverting the rewrites (its helpers are reused) and are kept only if the serving path's own
:class:`~backorigin.keys.Router` sends that viewer key to that origin object. Where several
streams produce one viewer key (a route's primary and its fallbacks, or two routes sharing an
origin), the one the copy path would read first wins, as for a viewer request.

The cost of the guarantee: an origin prefix that several rewrites read is listed once per
rewrite (a catch-all route with ``strip_prefix`` is listed twice: once for the viewer keys
that carry the prefix and once for those that do not). Listing costs one request per 1,000
objects or so, a small price next to a HEAD per object.

Every listing's order is checked as it streams; a listing out of order (some S3-compatible
stores and S3 directory buckets do not sort) stops the walk with :class:`ListingOrderError`
rather than producing a wrong answer. Give such an origin's keys with a keys file instead.
"""

from __future__ import annotations

__all__ = ["ListingOrderError", "OrderedJob", "OrderedWalk", "Stream"]

import heapq
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from backorigin.adapters import OriginAdapter
from backorigin.config.models import Config
from backorigin.errors import BackoriginError, InvalidKey, NotSupported, ObjectNotFound
from backorigin.keys import Router, Target, is_reserved
from backorigin.prewarm.listing import _origin_prefix, _rules, viewer_keys
from backorigin.types import ObjectInfo

log = logging.getLogger("backorigin.prewarm")

_EXAMPLES = 20


class ListingOrderError(BackoriginError):
    """A listing did not come out in key order, so a merge join cannot use it."""


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
        if not origin_key.startswith(self.add):
            return None
        rest = origin_key[len(self.add) :]
        if self.keep_strip:
            return self.strip + rest
        if self.strip and rest.startswith(self.strip):
            return None  # that viewer key is the other stream's
        return rest


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
    for route, rule in _rules(config):
        route_prefix = route.prefix if route is not None else ""
        if prefix.startswith(route_prefix):
            viewer = prefix
        elif route_prefix.startswith(prefix):
            viewer = route_prefix
        else:
            continue  # no key starts with both
        kinds = [(True, _origin_prefix(viewer, rule.strip, rule.add))]
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
class OrderedWalk:
    """Lists the origins and yields :class:`OrderedJob` s in viewer-key order, each key once.

    Iterate it once. The counters are updated as the walk goes (a progress display reads
    them). ``buffered`` and ``max_buffered`` show the merge's state: at most one pending entry
    per stream, whatever the number of objects.

    Args:
        config: The configuration whose routes map keys.
        adapter: Returns the adapter of an origin by name.
        prefix: Only viewer keys starting with this are produced.

    Attributes:
        listed: Objects the origins listed (each counted once, even if several streams read
            it).
        jobs: Viewer keys produced.
        bytes: Sum of the listed sizes of the produced keys.
        unreachable: Listed objects no viewer key reaches.
        unreachable_bytes: Their listed sizes.
        unreachable_examples: A few ``(origin, origin key)`` of them.
        duplicates: Viewer keys produced by more than one stream (produced once).
        not_listable: Origins that cannot be listed, with the reason.
        buffered: Entries the merge holds right now.
        max_buffered: The most it ever held.
    """

    config: Config
    adapter: Callable[[str], OriginAdapter[Any]]
    prefix: str = ""
    listed: int = 0
    jobs: int = 0
    bytes: int = 0
    unreachable: int = 0
    unreachable_bytes: int = 0
    duplicates: int = 0
    buffered: int = 0
    max_buffered: int = 0
    unreachable_examples: list[tuple[str, str]] = field(default_factory=list)
    not_listable: dict[str, str] = field(default_factory=dict)

    def streams(self) -> list[Stream]:
        """The listings this walk runs."""
        return plan_streams(self.config, self.prefix)

    def origins(self) -> set[str]:
        """The origins this walk lists (some may turn out not listable)."""
        return {stream.origin for stream in self.streams()}

    def __iter__(self) -> Iterator[OrderedJob]:
        router = Router(self.config)
        streams = self.streams()
        sources = [self._stream(index, streams, router) for index in range(len(streams))]
        heap: list[tuple[str, int, int, OrderedJob]] = []

        def pull(index: int) -> None:
            item = next(sources[index], None)
            if item is not None:
                heapq.heappush(heap, (item[0].key, item[1], index, item[0]))
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

    def _stream(
        self, index: int, streams: list[Stream], router: Router
    ) -> Iterator[tuple[OrderedJob, int]]:
        """The stream's jobs in viewer-key order, with the target's rank in the route."""
        stream = streams[index]
        if stream.origin in self.not_listable:
            return
        # The first stream of an origin whose prefix covers an object counts it (listed,
        # unreachable), so that an object several streams read is counted once.
        earlier = [s.prefix for s in streams[:index] if s.origin == stream.origin and s != stream]
        previous: str | None = None
        try:
            for info in self.adapter(stream.origin).list(stream.prefix):
                if previous is not None and info.key <= previous:
                    raise ListingOrderError(
                        f"origin {stream.origin!r} listed {info.key!r} after {previous!r}: "
                        "its listing is not in key order, so it cannot be compared in one "
                        "pass; give its keys in a keys file instead"
                    )
                previous = info.key
                if not any(info.key.startswith(p) for p in earlier):
                    self._count(stream.origin, info, router)
                key = stream.viewer_key(info.key)
                if key is None or not key.startswith(self.prefix) or is_reserved(key):
                    continue
                rank = _rank(router, key, Target(stream.origin, info.key))
                if rank is not None:
                    yield OrderedJob(key, stream.origin, info), rank
        except NotSupported as exc:
            if previous is not None:
                raise
            log.warning("origin %s cannot be listed: %s", stream.origin, exc)
            self.not_listable[stream.origin] = str(exc)

    def _count(self, origin: str, info: ObjectInfo, router: Router) -> None:
        self.listed += 1
        keys = [k for k in viewer_keys(self.config, router, origin, info.key) if k]
        if not any(k.startswith(self.prefix) for k in keys):
            self.unreachable += 1
            self.unreachable_bytes += info.size
            if len(self.unreachable_examples) < _EXAMPLES:
                self.unreachable_examples.append((origin, info.key))


def _rank(router: Router, key: str, target: Target) -> int | None:
    """Where ``target`` stands among the targets the serving path tries for ``key``."""
    try:
        targets = router.route(key).targets
    except (InvalidKey, ObjectNotFound):
        return None
    try:
        return targets.index(target)
    except ValueError:
        return None
