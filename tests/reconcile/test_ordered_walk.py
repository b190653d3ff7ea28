"""The origins' side of status: listings through the routes, merged in viewer-key order.

The in-memory reference adapter stands in for the origins (its listing is sorted, as every
built-in adapter's is); a subclass whose listing is not sorted shows the walk refusing it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from backorigin.adapters import register_adapter
from backorigin.config import Config, load_config
from backorigin.prewarm import ListingOrderError, OrderedWalk
from backorigin.prewarm.ordered import Stream, plan_streams
from backorigin.testing.memory import MemoryAdapter, MemoryOrigin
from backorigin.types import ObjectInfo

pytestmark = pytest.mark.usefixtures("clean_registry")


class UnsortedAdapter(MemoryAdapter):
    """An origin whose listing comes out in reverse key order."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(reversed(list(super().list(prefix))))


def origins(config: Config, cls: type[MemoryAdapter] = MemoryAdapter) -> dict[str, MemoryAdapter]:
    return {o.name: cls(MemoryOrigin(name=o.name)) for o in config.origins}


def config_of(routes: str, names: tuple[str, ...] = ("a", "b")) -> Config:
    register_adapter("memory", MemoryAdapter)
    listed = "".join(f"  - {{name: {n}, type: memory}}\n" for n in names)
    return load_config(f"bucket: {{name: site}}\norigins:\n{listed}routes:\n{routes}")


def walk(config: Config, adapters: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    return [(job.key, job.origin) for job in OrderedWalk(config, adapters.__getitem__, prefix)]


def test_a_catch_all_route_with_a_prefix_to_strip_is_listed_once_per_kind_of_key() -> None:
    config = config_of("  - {prefix: '', origin: a, rewrite: {strip_prefix: static/}}\n", ("a",))
    assert plan_streams(config) == [
        Stream("a", "", "static/", "", keep_strip=True),
        Stream("a", "", "static/", "", keep_strip=False),
    ]
    adapters = origins(config)
    for key in ("b", "a", "static/x", "zz"):
        adapters["a"].put(key, b"1")
    # "static/x" at the origin is what viewer key "static/static/x" reaches; viewer key
    # "static/x" itself would be rewritten to origin key "x", which does not exist.
    assert walk(config, adapters) == [
        ("a", "a"),
        ("b", "a"),
        ("static/a", "a"),
        ("static/b", "a"),
        ("static/static/x", "a"),
        ("static/zz", "a"),
        ("zz", "a"),
    ]


def test_a_key_at_the_primary_and_a_fallback_comes_once_from_the_primary() -> None:
    config = config_of(
        "  - {prefix: docs/, suffix: .txt, origin: a, fallback: [b]}\n  - {prefix: '', origin: b}\n"
    )
    # b's docs/ listing is covered by the catch-all route's listing of b: listed once.
    assert [(s.origin, s.prefix) for s in plan_streams(config)] == [("a", "docs/"), ("b", "")]
    adapters = origins(config)
    adapters["a"].put("docs/both.txt", b"primary's")
    adapters["b"].put("docs/both.txt", b"fallback's")
    adapters["b"].put("docs/only-b.txt", b"1")
    adapters["a"].put("docs/only-a.txt", b"1")
    adapters["a"].put("docs/x.md", b"no route sends docs/*.md to a")
    adapters["b"].put("img/x", b"1")
    the_walk = OrderedWalk(config, adapters.__getitem__)
    assert [(j.key, j.origin) for j in the_walk] == [
        ("docs/both.txt", "a"),
        ("docs/only-a.txt", "a"),
        ("docs/only-b.txt", "b"),
        ("img/x", "b"),
    ]
    assert the_walk.duplicates == 1
    assert the_walk.listed == 6
    assert the_walk.unreachable == 1
    assert the_walk.unreachable_examples == [("a", "docs/x.md")]
    assert walk(config, adapters, "docs/o") == [("docs/only-a.txt", "a"), ("docs/only-b.txt", "b")]


def test_a_listing_out_of_order_stops_the_walk() -> None:
    config = config_of("  - {prefix: '', origin: a}\n", ("a",))
    adapters = origins(config, UnsortedAdapter)
    for key in ("k1", "k2"):
        adapters["a"].put(key, b"1")
    with pytest.raises(ListingOrderError, match="not in key order"):
        walk(config, adapters)
