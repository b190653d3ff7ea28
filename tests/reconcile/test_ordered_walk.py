"""The origins' side of status: listings through the routes, merged in viewer-key order.

The in-memory reference adapter stands in for the origins; a subclass whose listing comes out
in reverse order shows the walk sorting it with bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from operator import itemgetter
from typing import Any

import pytest

from backorigin.adapters import register_adapter
from backorigin.config import Config, load_config
from backorigin.prewarm import OrderedWalk
from backorigin.prewarm.extsort import SortStats, sorted_by_key
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


def test_a_listing_out_of_order_comes_out_sorted_with_bounded_memory() -> None:
    config = config_of("  - {prefix: '', origin: a}\n", ("a",))
    adapters = origins(config, UnsortedAdapter)
    keys = [f"k{i:03d}" for i in range(50)]
    for key in keys:
        adapters["a"].put(key, b"1")
    # Runs of 4 are spilled to disk and merged back: the run and one entry per run in memory.
    the_walk = OrderedWalk(config, adapters.__getitem__, run_size=4)
    assert [job.key for job in the_walk] == keys
    assert the_walk.sort.spilled == 12
    assert the_walk.sort.max_held <= 4 + 12


def test_the_external_sort_merges_runs_in_rounds_to_bound_open_files() -> None:
    items = [(f"{(i * 7919) % 1000:04d}", i) for i in range(1000)]  # a permutation
    stats = SortStats()
    out = list(sorted_by_key(items, itemgetter(0), run_size=10, fan_in=3, stats=stats))
    assert out == sorted(items)
    assert stats.spilled >= 100
    # In memory: at most one run's items, plus one item per open run — at most fan_in - 1
    # in each of the log3(100) < 5 rounds.
    assert stats.max_held <= 10 + (3 - 1) * 5
