"""Keys: URI decoding, validation and routing, with property-based tests."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from backorigin.config import load_config
from backorigin.errors import InvalidKey, ObjectNotFound
from backorigin.keys import (
    MAX_KEY_BYTES,
    RESERVED_PREFIX,
    Router,
    Target,
    bucket_key,
    decode_uri,
    encode_key,
    validate_key,
)

CONFIG = load_config("""\
bucket: {name: media-new, prefix: mirror/}
origins:
  - {name: legacy, type: gcs, bucket: old-media}
  - {name: web, type: http, base_url: "https://old.example.com/static/"}
  - {name: cdn, type: http, base_url: "https://cdn.example.com/"}
routes:
  - prefix: images/
    suffix: [.jpg, .png]
    origin: legacy
    fallback: [web, cdn]
    rewrite: {strip_prefix: images/, add_prefix: img/}
  - prefix: docs/
    origin: web
    rewrite: {strip_prefix: docs/}
  - prefix: static/
    origin: cdn
""")

# Text a valid key can be made of: any Unicode scalar but controls and backslash.
key_chars = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\\x7f").filter(
    lambda c: not 0x80 <= ord(c) <= 0x9F
)


def is_valid(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


valid_keys = st.text(key_chars, min_size=1, max_size=200).filter(is_valid)


@pytest.mark.parametrize(
    ("uri", "key"),
    [
        ("/a.txt", "a.txt"),
        ("/dir/sub/file.bin", "dir/sub/file.bin"),
        ("/with%20space", "with space"),
        ("/plus+sign", "plus+sign"),
        ("/encoded%2Bplus", "encoded+plus"),
        ("/caf%C3%A9/%E2%82%AC.txt", "café/€.txt"),
        ("/raw-é", "raw-é"),
        ("/a%2Fb", "a/b"),
        ("/percent%2541", "percent%41"),
        ("/.hidden", ".hidden"),
        ("/dir/..dots../x", "dir/..dots../x"),
        ("/a//b", "a//b"),
    ],
)
def test_decode(uri: str, key: str) -> None:
    assert decode_uri(uri) == key


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("/", "empty"),
        ("no-slash", "start with '/'"),
        ("/" + "a" * (MAX_KEY_BYTES + 1), "1025 bytes"),
        ("/" + "é" * 513, "1026 bytes"),
        ("/a%00b", "NUL"),
        ("/a%0Ab", "control character U+000A"),
        ("/a%7Fb", "U+007F"),
        ("/a%C2%85b", "U+0085"),
        ("/a/../b", "'..'"),
        ("/a/%2E%2E/b", "'..'"),
        ("/a/%2e/b", "'..'"),
        ("/..", "'..'"),
        ("/a%2F..%2Fb", "'..'"),
        ("/a%5Cb", "backslash"),
        ("/a\\b", "backslash"),
        ("/a%zzb", "percent-escape"),
        ("/a%4", "percent-escape"),
        ("/a%", "percent-escape"),
        ("/a%FFb", "UTF-8"),
        ("/a%C3", "UTF-8"),
        ("/a%ED%A0%80", "UTF-8"),
        ("/" + RESERVED_PREFIX + "lease", "reserved"),
        ("/%2Ebackorigin/x", "reserved"),
    ],
)
def test_rejected(uri: str, reason: str) -> None:
    with pytest.raises(InvalidKey, match=re.escape(reason)):
        decode_uri(uri)


def test_lone_surrogates_are_rejected() -> None:
    with pytest.raises(InvalidKey, match="UTF-8"):
        validate_key("a\ud800b")


def test_exactly_1024_bytes_is_allowed() -> None:
    assert validate_key("k" * MAX_KEY_BYTES)


@given(valid_keys)
def test_encode_then_decode_round_trips(key: str) -> None:
    assume(not key.startswith(RESERVED_PREFIX))
    uri = encode_key(key)
    assert uri.isascii()
    assert decode_uri(uri) == key


@given(st.text(max_size=60))
def test_decode_only_ever_raises_invalid_key(uri: str) -> None:
    try:
        key = decode_uri("/" + uri)
    except InvalidKey:
        return  # the only exception allowed; anything else fails the test
    assert validate_key(key) == key
    assert decode_uri(encode_key(key)) == key


@given(
    st.lists(st.sampled_from(["a", "b", ".", "..", "%2e", "%2E%2e", "%2F", "/", "x%"]), max_size=8)
)
def test_no_decoded_key_has_dot_segments(parts: list[str]) -> None:
    try:
        key = decode_uri("/" + "/".join(parts))
    except InvalidKey:
        return
    assert all(segment not in (".", "..") for segment in key.split("/"))


@given(st.text(max_size=80))
def test_a_rejected_key_never_reaches_routing(key: str) -> None:
    """Routing validates first: an invalid key raises before any route is consulted."""
    router = Router(CONFIG)
    if not is_valid(key):
        with pytest.raises(InvalidKey):
            router.route(key)
        return
    try:
        route = router.route(key)
    except (ObjectNotFound, InvalidKey):
        return
    for target in route.targets:
        assert validate_key(target.key) == target.key


def test_routing_first_match_with_rewrite_and_fallbacks() -> None:
    route = Router(CONFIG).route("images/cats/tom.jpg")
    assert route.key == "images/cats/tom.jpg"
    assert route.targets == (
        Target("legacy", "img/cats/tom.jpg"),
        Target("web", "img/cats/tom.jpg"),
        Target("cdn", "img/cats/tom.jpg"),
    )
    assert route.primary == Target("legacy", "img/cats/tom.jpg")


def test_suffix_must_match() -> None:
    with pytest.raises(ObjectNotFound, match="no route"):
        Router(CONFIG).route("images/cats/tom.gif")


def test_second_route_and_strip_only() -> None:
    assert Router(CONFIG).route("docs/guide.pdf").targets == (Target("web", "guide.pdf"),)
    assert Router(CONFIG).route("static/app.js").targets == (Target("cdn", "static/app.js"),)


def test_rewrite_that_empties_the_key_is_rejected() -> None:
    with pytest.raises(InvalidKey, match="after the route's rewrite"):
        Router(CONFIG).route("docs/")


def test_without_routes_everything_goes_to_the_first_origin() -> None:
    config = load_config(
        "bucket: {name: abc}\norigins:\n  - {name: only, type: gcs, bucket: old}\n"
    )
    assert Router(config).route("any/key").targets == (Target("only", "any/key"),)


def test_bucket_key_applies_the_bucket_prefix() -> None:
    assert bucket_key(CONFIG, "a/b.txt") == "mirror/a/b.txt"
