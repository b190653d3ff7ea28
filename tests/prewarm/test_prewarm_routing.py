"""Listed origin keys back to viewer keys: every answer is checked against the forward Router."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from backorigin.config import Config, load_config
from backorigin.errors import InvalidKey, ObjectNotFound
from backorigin.keys import Router, RouteRule, validate_key
from backorigin.prewarm import KeyWriter, Scan, count_keys, plan_scans, read_keys, viewer_keys

ORIGINS = (
    "origins:\n"
    "  - {name: gcs, type: gcs, bucket: old}\n"
    "  - {name: web, type: http, base_url: 'https://old.example.com/'}\n"
    "  - name: blob\n"
    "    type: azure\n"
    "    account_url: 'https://acct.blob.core.windows.net'\n"
    "    container: old\n"
)


def config(routes: str = "") -> Config:
    return load_config("bucket: {name: new-bucket}\n" + ORIGINS + routes)


REWRITES = config(
    "routes:\n"
    "  - {prefix: media/, origin: gcs, rewrite: {strip_prefix: media/, add_prefix: assets/}}\n"
    "  - {prefix: docs/, suffix: [.pdf], origin: web, fallback: [blob]}\n"
    "  - {prefix: docs/, origin: blob}\n"
    "  - {prefix: '', origin: gcs, rewrite: {strip_prefix: static/}}\n"
)


def test_without_routes_the_first_origin_is_listed_as_is() -> None:
    plain = config()
    assert plan_scans(plain, "a/") == [Scan("gcs", "a/")]
    assert viewer_keys(plain, Router(plain), "gcs", "a/b.txt") == ["a/b.txt"]
    assert viewer_keys(plain, Router(plain), "web", "a/b.txt") == []


def test_a_strip_and_add_rewrite_is_inverted() -> None:
    cfg = config(
        "routes:\n"
        "  - {prefix: media/, origin: gcs, rewrite: {strip_prefix: media/, add_prefix: assets/}}\n"
    )
    router = Router(cfg)
    assert viewer_keys(cfg, router, "gcs", "assets/cat.jpg") == ["media/cat.jpg"]
    assert router.route("media/cat.jpg").primary.key == "assets/cat.jpg"
    assert viewer_keys(cfg, router, "gcs", "cat.jpg") == []  # lacks the added prefix


def test_fallback_origins_map_back_to_the_same_viewer_key() -> None:
    router = Router(REWRITES)
    assert viewer_keys(REWRITES, router, "blob", "docs/guide.pdf") == ["docs/guide.pdf"]
    assert viewer_keys(REWRITES, router, "web", "docs/guide.pdf") == ["docs/guide.pdf"]
    # docs/*.txt goes to the third route (blob only): web never serves it.
    assert viewer_keys(REWRITES, router, "web", "docs/notes.txt") == []
    assert viewer_keys(REWRITES, router, "blob", "docs/notes.txt") == ["docs/notes.txt"]


def test_a_catch_all_strip_makes_aliases() -> None:
    """``static/a`` and ``a`` both read origin key ``a``: both are viewer keys, both listed."""
    router = Router(REWRITES)
    assert viewer_keys(REWRITES, router, "gcs", "logo.png") == ["static/logo.png", "logo.png"]


def test_shadowed_and_unreachable_origin_keys_map_to_nothing() -> None:
    router = Router(REWRITES)
    # Origin key media/x would need viewer key media/x or static/media/x through the catch-all;
    # media/x goes to the first route instead, static/media/x does reach it.
    assert viewer_keys(REWRITES, router, "gcs", "media/x") == ["static/media/x"]
    # assets/x is reached through the first route only (and through the catch-all as
    # static/assets/x and assets/x).
    assert viewer_keys(REWRITES, router, "gcs", "assets/x") == [
        "media/x",
        "static/assets/x",
        "assets/x",
    ]
    assert viewer_keys(REWRITES, router, "blob", "other/x") == []
    # A viewer key in the reserved namespace is never produced (the stripped alias is fine).
    assert viewer_keys(REWRITES, router, "gcs", ".backorigin/x") == ["static/.backorigin/x"]


def test_listing_plans_merge_prefixes_and_skip_origins_no_route_reaches() -> None:
    assert plan_scans(REWRITES, "media/") == [Scan("gcs", "assets/"), Scan("gcs", "media/")]
    assert plan_scans(REWRITES, "docs/") == [
        Scan("gcs", "docs/"),
        Scan("web", "docs/"),
        Scan("blob", "docs/"),
    ]
    # The catch-all route lists the whole of gcs, which covers every other gcs prefix.
    assert plan_scans(REWRITES) == [Scan("gcs", ""), Scan("web", "docs/"), Scan("blob", "docs/")]
    only_media = config("routes:\n  - {prefix: media/, origin: gcs}\n")
    assert plan_scans(only_media, "docs/") == []
    assert plan_scans(only_media, "") == [Scan("gcs", "media/")]


def validate_key_ok(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


KEY_TEXT = st.text(alphabet="ab/._-", max_size=10)


@st.composite
def routed_configs(draw: st.DrawFn) -> Config:
    routes = []
    for _ in range(draw(st.integers(1, 3))):
        prefix = draw(st.sampled_from(["", "a/", "ab", "b/", "a/b/"]))
        strip = draw(st.sampled_from(["", "a/", "ab", "b/", prefix]))
        add = draw(st.sampled_from(["", "x/", "a/"]))
        origin = draw(st.sampled_from(["gcs", "blob"]))
        routes.append(
            f"  - {{prefix: '{prefix}', origin: {origin}, "
            f"rewrite: {{strip_prefix: '{strip}', add_prefix: '{add}'}}}}\n"
        )
    return config("routes:\n" + "".join(routes))


def route_rules(cfg: Config) -> list[RouteRule]:
    """The config's routes as the router's rules."""
    return [
        RouteRule(
            prefix=route.prefix,
            suffix=tuple(route.suffix),
            origins=(route.origin, *route.fallback),
            strip_prefix=route.rewrite.strip_prefix,
            add_prefix=route.rewrite.add_prefix,
        )
        for route in cfg.routes
    ]


@settings(max_examples=300, deadline=None)
@given(routed_configs(), KEY_TEXT, st.sampled_from(["", "a", "a/", "b/", "x/a"]))
# Always tried: a valid key that the matching route's rewrite strips to nothing.
@example(config("routes:\n  - {prefix: a/, origin: gcs, rewrite: {strip_prefix: a/}}\n"), "a/", "")
def test_inversion_finds_exactly_the_viewer_keys_under_the_prefix(
    cfg: Config, viewer: str, prefix: str
) -> None:
    """For any viewer key the router sends somewhere, listing that origin key under any
    viewer prefix produces the viewer key iff it starts with the prefix, and everything
    produced routes back to the listed target."""
    router = Router(cfg)
    refusal: InvalidKey | ObjectNotFound | None = None
    try:
        route = router.route(viewer)
    except (InvalidKey, ObjectNotFound) as exc:
        refusal = exc
    if isinstance(refusal, ObjectNotFound):
        # Only when no route takes the key at all.
        assert not any(rule.matches(viewer) for rule in route_rules(cfg)), viewer
        return
    if refusal is not None:
        # Only when the key is invalid as it is, or the matching route's rewrite makes it so.
        assert not validate_key_ok(viewer) or "after the route's rewrite" in str(refusal), viewer
        return
    for target in route.targets:
        found = viewer_keys(cfg, router, target.origin, target.key)
        assert viewer in found
        for key in found:
            assert target in router.route(key).targets
        if viewer.startswith(prefix):
            scans = plan_scans(cfg, prefix)
            assert any(
                s.origin == target.origin and target.key.startswith(s.prefix) for s in scans
            ), (scans, target)


def test_the_key_file_format_round_trips(tmp_path: Path) -> None:
    keys = ["a b.txt", " leading", "trailing ", "ünï/cødé", "#not-a-comment", "x"]
    path = tmp_path / "keys.txt"
    with KeyWriter(path) as writer:
        for key in keys:
            writer.write(key)
    assert writer.count == len(keys)
    path.write_bytes(path.read_bytes() + b"\r\n\nlast-without-newline")
    with path.open(encoding="utf-8", newline="") as file:
        assert list(read_keys(file)) == [*keys, "last-without-newline"]
    assert count_keys(path) == len(keys) + 1


@pytest.mark.parametrize("prefix", ["", "media/", "media/a", "static/", "st"])
def test_every_listed_job_is_under_the_viewer_prefix(prefix: str) -> None:
    router = Router(REWRITES)
    for scan in plan_scans(REWRITES, prefix):
        for origin_key in (scan.prefix + "f.txt", scan.prefix + "static/f.txt"):
            for key in viewer_keys(REWRITES, router, scan.origin, origin_key):
                route = router.route(key)
                assert any(t.origin == scan.origin for t in route.targets)
