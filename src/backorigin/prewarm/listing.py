"""Walking the origins for prewarm: origin keys back to the viewer keys that reach them.

Copy jobs carry *viewer* keys (what a request URI decodes to), because that is what the copy
engine and the fetcher route, rewrite and store under. Listing, however, walks an origin's own
key space. This module plans which origin prefixes to list for a viewer-key prefix and maps
every listed origin key back through the routes' rewrites.

The inverse of a route's rewrite (``strip_prefix`` then ``add_prefix``) is computed
symbolically and then *checked forward* with the same :class:`~backorigin.keys.Router` the edge
and the copy engine use: a viewer key is emitted only if routing it really sends the copy path
to that origin and that origin key. So the routes apply exactly as on the serving path, by
construction. Rewrites are not always invertible; what happens then:

* **several viewer keys reach one origin object** (e.g. a catch-all route with
  ``strip_prefix: static/`` serves both ``static/a`` and ``a`` from origin key ``a``): every
  such viewer key is emitted, since viewers can request each and each is its own object in S3;
  :attr:`Walk.aliases` counts the extra ones;
* **no viewer key reaches an origin object** (no route sends anything there, a route is
  shadowed by an earlier one, a suffix does not match, the origin key lacks the route's
  ``add_prefix``, or the viewer key would be invalid or reserved): nothing can ever request it,
  so it is skipped; :attr:`Walk.unreachable` counts them and keeps a few examples;
* **one viewer key is listed at several origins** (a route's primary and its fallbacks): it is
  emitted once, with the information of the first origin that listed it; which origin's bytes
  are copied is decided by the copy engine exactly as for a viewer request (primary first).
"""

from __future__ import annotations

__all__ = ["Job", "Scan", "Walk", "WalkCounts", "plan_scans", "routable", "viewer_keys"]

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from backorigin.adapters import OriginAdapter
from backorigin.config.models import Config
from backorigin.errors import InvalidKey, NotSupported, ObjectNotFound
from backorigin.keys import Router, Target, is_reserved
from backorigin.types import RESERVED_PREFIX, ObjectInfo

log = logging.getLogger("backorigin.prewarm")

_EXAMPLES = 20


@dataclass(frozen=True, slots=True)
class Job:
    """One key to prewarm.

    Attributes:
        key: The viewer key (as a request URI decodes to), which is also the S3 key below the
            bucket prefix.
        origin: The origin whose listing produced the job (None for keys given by the user).
        info: What that listing said about the object; its ``key`` is the origin-side key.
    """

    key: str
    origin: str | None = None
    info: ObjectInfo | None = None


@dataclass(frozen=True, slots=True)
class Scan:
    """One listing to run: an origin and the origin-side key prefix to list."""

    origin: str
    prefix: str


@dataclass(frozen=True, slots=True)
class _Rule:
    """The inverse view of one route (or of the default route when there are none)."""

    prefix: str
    origins: tuple[str, ...]
    strip: str
    add: str

    def origin_prefix(self, viewer: str) -> str:
        """The shortest origin prefix covering every rewrite of keys that start with ``viewer``."""
        if not self.strip or viewer.startswith(self.strip):
            return self.add + viewer[len(self.strip) :]
        if self.strip.startswith(viewer):
            # Keys under ``viewer`` that start with ``strip`` lose it (origin keys: add +
            # anything), the others keep their full text (add + viewer...); ``add`` covers both.
            return self.add
        return self.add + viewer


def _rules(config: Config) -> list[_Rule]:
    if not config.routes:
        return [_Rule("", (config.default_origin,), "", "")]
    return [
        _Rule(
            route.prefix,
            (route.origin, *route.fallback),
            route.rewrite.strip_prefix,
            route.rewrite.add_prefix,
        )
        for route in config.routes
    ]


def _rules_under(config: Config, prefix: str) -> Iterator[tuple[_Rule, str]]:
    """The rules that serve viewer keys under ``prefix``, each with the longer of the two
    prefixes (every such key starts with it)."""
    for rule in _rules(config):
        if prefix.startswith(rule.prefix):
            yield rule, prefix
        elif rule.prefix.startswith(prefix):
            yield rule, rule.prefix
        # otherwise no key starts with both


def _inverse(origin_key: str, strip: str, add: str, *, keep_strip: bool) -> str | None:
    """The viewer key a rewrite (``strip`` then ``add``) maps to ``origin_key``, if any.

    ``keep_strip`` picks which of the two: the key that carried ``strip`` (``strip + rest``),
    or the key that never had it (``rest``), which a route with a prefix to strip serves too
    when it does not start with that prefix.
    """
    if not origin_key.startswith(add):
        return None
    rest = origin_key[len(add) :]
    if keep_strip:
        return strip + rest
    if not strip or rest.startswith(strip):
        return None  # the same key as the first candidate, or one that carried the prefix
    return rest


def _targets(router: Router, key: str) -> tuple[Target, ...]:
    """The targets the serving path tries for ``key``, in order (none for a key it refuses)."""
    try:
        return router.route(key).targets
    except (InvalidKey, ObjectNotFound):
        return ()


def plan_scans(config: Config, prefix: str = "") -> list[Scan]:
    """The listings that find every origin object a viewer key starting with ``prefix`` reaches.

    One scan per origin and origin-side prefix; prefixes covered by a shorter one of the same
    origin are merged into it. Origins no route leads to are not listed: nothing reaches them.
    """
    wanted: dict[str, set[str]] = {}
    for rule, viewer in _rules_under(config, prefix):
        for origin in rule.origins:
            wanted.setdefault(origin, set()).add(rule.origin_prefix(viewer))
    scans: list[Scan] = []
    for origin in [o.name for o in config.origins]:
        kept: list[str] = []
        for candidate in sorted(wanted.get(origin, ()), key=len):
            if not any(candidate.startswith(shorter) for shorter in kept):
                kept.append(candidate)
        scans.extend(Scan(origin, p) for p in sorted(kept))
    return scans


def viewer_keys(config: Config, router: Router, origin: str, origin_key: str) -> list[str]:
    """Every viewer key whose copy path reads ``origin_key`` from ``origin``.

    Candidates come from inverting each route's rewrite; each is kept only if
    :meth:`Router.route` (the serving path's own routing) sends it to this exact target.
    Reserved keys (under ``.backorigin/``) are never returned: viewers cannot ask for them.
    """
    target = Target(origin, origin_key)
    found: list[str] = []
    for rule in _rules(config):
        if origin not in rule.origins:
            continue
        for keep_strip in (True, False):
            key = _inverse(origin_key, rule.strip, rule.add, keep_strip=keep_strip)
            if key is None or key in found or is_reserved(key):
                continue
            if target in _targets(router, key):
                found.append(key)
    return found


@dataclass
class WalkCounts:
    """What a walk of the origins has seen so far; updated as it goes, so that a progress
    display can read it while the walk runs.

    Args:
        config: The configuration whose routes map keys.
        adapter: Returns the adapter of an origin by name.
        prefix: Only viewer keys starting with this are produced.

    Attributes:
        listed: Objects the origins listed.
        jobs: Viewer keys produced.
        bytes: Sum of the listed sizes of the produced keys.
        unreachable: Listed objects no viewer key reaches (skipped).
        unreachable_bytes: Their listed sizes.
        unreachable_examples: A few ``(origin, origin key)`` of them.
        duplicates: Viewer keys listed at more than one origin (produced once).
        not_listable: Origins that cannot be listed, with the reason (their keys are missing).
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
    unreachable_examples: list[tuple[str, str]] = field(default_factory=list)
    not_listable: dict[str, str] = field(default_factory=dict)

    def _skip_unreachable(self, origin: str, info: ObjectInfo) -> None:
        """Count a listed object no viewer key reaches."""
        self.unreachable += 1
        self.unreachable_bytes += info.size
        if len(self.unreachable_examples) < _EXAMPLES:
            self.unreachable_examples.append((origin, info.key))

    def _skip_origin(self, origin: str, exc: NotSupported) -> None:
        """Note an origin that cannot be listed (its keys must come from a keys file)."""
        log.warning("origin %s cannot be listed: %s", origin, exc)
        self.not_listable[origin] = str(exc)


@dataclass
class Walk(WalkCounts):
    """Lists the origins and yields :class:`Job` s for the viewer keys under a prefix.

    Iterate it once; the counters (:class:`WalkCounts`) move as it goes.

    Attributes:
        aliases: Jobs beyond the first for one origin object (several viewer keys reach it).
    """

    aliases: int = 0

    def scans(self) -> list[Scan]:
        """The listings this walk runs, in order."""
        return plan_scans(self.config, self.prefix)

    def __iter__(self) -> Iterator[Job]:
        router = Router(self.config)
        scans = self.scans()
        # A viewer key can only come up twice when more than one origin is listed (a route's
        # primary and its fallbacks); only then is remembering the keys worth its memory.
        seen: set[str] | None = set() if len({s.origin for s in scans}) > 1 else None
        for scan in scans:
            if scan.origin in self.not_listable:
                continue
            try:
                listing = self.adapter(scan.origin).list(scan.prefix)
                for info in listing:
                    self.listed += 1
                    keys = [
                        key
                        for key in viewer_keys(self.config, router, scan.origin, info.key)
                        if key.startswith(self.prefix)
                    ]
                    if not keys:
                        self._skip_unreachable(scan.origin, info)
                        continue
                    self.aliases += len(keys) - 1
                    for key in keys:
                        if seen is not None:
                            if key in seen:
                                self.duplicates += 1
                                continue
                            seen.add(key)
                        self.jobs += 1
                        self.bytes += info.size
                        yield Job(key, scan.origin, info)
            except NotSupported as exc:
                self._skip_origin(scan.origin, exc)


def routable(
    router: Router, keys: Iterable[str], reject: Callable[[str, str], None]
) -> Iterator[str]:
    """The ``keys`` the serving path can route; the others go to ``reject(key, reason)``.

    A distributed prewarm checks keys before it enqueues them: the fetcher would fail an
    invalid key (and SQS would retry it into the dead-letter queue) or find no route for it.
    """
    for key in keys:
        if is_reserved(key):
            reject(key, f"keys under {RESERVED_PREFIX} are reserved")
            continue
        try:
            router.route(key)
        except (InvalidKey, ObjectNotFound) as exc:
            reject(key, str(exc))
            continue
        yield key
