"""The adapter conformance suite: one set of tests every origin adapter must pass.

Modeled on fsspec's ``tests/abstract`` and object_store's ``integration.rs``: a test module
subclasses :class:`AdapterConformance`, overrides the ``origin`` fixture to yield an
:class:`OriginUnderTest` (the adapter plus a way to seed its backing store, ideally a real
local emulator), and declares the backend's gaps as class attributes *with the reason*::

    from backorigin.testing.conformance import AdapterConformance

    class TestMyAdapter(AdapterConformance):
        supports_list = "the emulator has no listing API"
        expected_checksums = frozenset({"md5"})

        @pytest.fixture
        def origin(self, my_emulator):
            yield MyOriginUnderTest(my_emulator)

Every test works in its own key namespace (the ``ns`` fixture), so one emulator can serve
the whole suite. The suite needs pytest (a test dependency, not a runtime one); call
``pytest.register_assert_rewrite("backorigin.testing.conformance")`` in a ``conftest.py``
for detailed assertion messages.
"""

from __future__ import annotations

__all__ = ["AdapterConformance", "ObjectMeta", "OriginUnderTest", "payload"]

import gzip
import hashlib
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any, ClassVar, Literal, Protocol, TypedDict, Unpack

import pytest

from backorigin.adapters.base import ObjectStream, OriginAdapter
from backorigin.adapters.read import GetResult, RawGet
from backorigin.errors import (
    InvalidKey,
    InvalidRange,
    NotSupported,
    ObjectNotFound,
    PreconditionFailed,
    TransientOriginError,
)
from backorigin.types import ByteRange, GetOptions, ObjectInfo, OriginSpec

Capability = Literal[True] | str
"""``True`` when a backend supports something, else the reason it does not."""


class ObjectMeta(TypedDict, total=False):
    """The metadata a test may seed an object with (the fields of :class:`ObjectInfo`)."""

    content_type: str
    content_encoding: str
    cache_control: str
    content_disposition: str
    content_language: str
    expires: str
    metadata: Mapping[str, str]


class OriginUnderTest(Protocol):
    """An adapter together with write access to the store it reads."""

    @property
    def adapter(self) -> OriginAdapter[Any]:
        """The adapter under test."""
        ...

    def put(self, key: str, data: bytes, **meta: Unpack[ObjectMeta]) -> None:
        """Create (or overwrite) ``key``; ``key`` is as the adapter's ``head`` takes it."""
        ...

    def replace(self, key: str, data: bytes) -> None:
        """Write a new version of an existing ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``."""
        ...


def payload(size: int, seed: str = "") -> bytes:
    """``size`` deterministic, incompressible bytes."""
    return hashlib.shake_256(f"backorigin-conformance:{seed}".encode()).digest(size)


def _crc32c(data: bytes) -> bytes:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return (crc ^ 0xFFFFFFFF).to_bytes(4, "big")


_DIGESTS = {
    "md5": lambda d: hashlib.md5(d).digest(),  # noqa: S324 - a checksum, not security
    "sha1": lambda d: hashlib.sha1(d).digest(),  # noqa: S324
    "sha256": lambda d: hashlib.sha256(d).digest(),
    "crc32": lambda d: zlib.crc32(d).to_bytes(4, "big"),
    "crc32c": _crc32c,
}

_SIZE = 1000
_RANGES = [
    ("bounded", ByteRange.bounded(10, 20), slice(10, 20)),
    ("first-byte", ByteRange.bounded(0, 1), slice(0, 1)),
    ("last-byte", ByteRange.bounded(_SIZE - 1, _SIZE), slice(_SIZE - 1, _SIZE)),
    ("offset", ByteRange.from_offset(990), slice(990, None)),
    ("offset-zero", ByteRange.from_offset(0), slice(None)),
    ("suffix", ByteRange.suffix(10), slice(_SIZE - 10, None)),
    ("end-past-eof", ByteRange.bounded(990, 5000), slice(990, None)),
    ("suffix-past-start", ByteRange.suffix(5000), slice(None)),
]
_BEYOND = [
    ("at-eof", ByteRange.bounded(_SIZE, _SIZE + 10)),
    ("after-eof", ByteRange.bounded(_SIZE + 100, _SIZE + 200)),
    ("offset-at-eof", ByteRange.from_offset(_SIZE)),
]
_KEYS = [
    "with space.txt",
    "plus+sign.txt",
    "percent%2Fslash.txt",
    "percent%25twice.txt",
    "ünïcödé/日本語.txt",
    "deep/a/b/c/d/e/f/g.txt",
    "question?mark#hash.txt",
    "semi;colon=equals&amp'quote.txt",
    "tilde~(parens)!*.txt",
]
# Every field of ObjectInfo a GET must state exactly as HEAD does.
_GET_LIKE_HEAD = (
    "key",
    "size",
    "etag",
    "version",
    "last_modified",
    "content_type",
    "content_encoding",
    "cache_control",
    "content_disposition",
    "content_language",
    "expires",
    "metadata",
    "checksums",
)


class _DroppedBody:
    """A body that fails like a dropped connection once ``allowed`` bytes went through."""

    def __init__(self, raw: RawGet, allowed: int) -> None:
        self._body = raw.body
        self._allowed = allowed

    def readinto(self, buffer: memoryview) -> int:
        if self._allowed <= 0:
            raise TransientOriginError("the connection dropped (planted by the test)")
        count = self._body.readinto(buffer[: self._allowed])
        self._allowed -= count
        return count

    def close(self) -> None:
        self._body.close()


def _dropping_get(
    adapter: OriginAdapter[Any], key: str, after: int, calls: list[GetOptions]
) -> Callable[[GetOptions], RawGet]:
    """The adapter's primitive for ``key``, whose first answer drops after ``after`` bytes."""

    def get_once(options: GetOptions) -> RawGet:
        calls.append(options)
        raw = adapter.get_once(key, options)
        return replace(raw, body=_DroppedBody(raw, after)) if len(calls) == 1 else raw

    return get_once


def _no_pause(seconds: float) -> None:
    del seconds


_BAD_KEYS = ["../escape", "a/../../b", "./a", "a/./b", "a/..", "back\\slash", "nul\x00"]


class AdapterConformance:
    """Base class of an adapter's conformance tests; see the module docstring.

    Class attributes declare capabilities: ``True``, or a string saying why the backend
    lacks it, which becomes the skip reason (or, for listing, the expectation that
    :class:`NotSupported` is raised).
    """

    supports_list: ClassVar[Capability] = True
    """Whether ``list(prefix)`` works (else it must raise :class:`NotSupported`)."""
    supports_user_metadata: ClassVar[Capability] = True
    """Whether user metadata round-trips through ``head``."""
    supports_standard_metadata: ClassVar[Capability] = True
    """Whether Content-Type, Cache-Control, … round-trip through ``head``."""
    supports_expires: ClassVar[Capability] = True
    """Whether an ``Expires`` set on an object round-trips (GCS and Azure have none)."""
    supports_versions: ClassVar[Capability] = True
    """Whether ``head`` returns a version token that pins reads."""
    expected_checksums: ClassVar[frozenset[str]] = frozenset()
    """Algorithms ``head`` must state (every stated one must match the data in any case)."""
    large_size: ClassVar[int] = 3 * 1024 * 1024
    """Size of the object used to check that reads are streamed in several chunks."""

    # --- fixtures to provide -----------------------------------------------------------------

    @pytest.fixture
    def origin(self) -> Iterator[OriginUnderTest]:
        """Override: yield the adapter under test with access to its backing store."""
        raise NotImplementedError(f"{type(self).__name__} must override the 'origin' fixture")

    @pytest.fixture
    def ns(self) -> str:
        """A key namespace of one's own, so tests can share a store."""
        return f"conformance/{uuid.uuid4().hex[:12]}/"

    # --- helpers -----------------------------------------------------------------------------

    def require(self, capability: str) -> None:
        """Skip the calling test, with the declared reason, if ``capability`` is missing."""
        value = getattr(self, capability)
        if value is not True:
            pytest.skip(f"{type(self).__name__}.{capability}: {value}")

    @staticmethod
    def read_all(adapter: OriginAdapter[Any], key: str, **kwargs: Any) -> bytes:
        """Read through the streaming API (not ``read_bytes``), closing the stream."""
        stream = adapter.read(key, **kwargs)
        assert isinstance(stream, ObjectStream), "read() must return a closeable iterator"
        try:
            return b"".join(stream)
        finally:
            stream.close()

    # --- whole objects -----------------------------------------------------------------------

    def test_head_reports_size(self, origin: OriginUnderTest, ns: str) -> None:
        data = payload(_SIZE, "head")
        origin.put(ns + "object.bin", data)
        info = origin.adapter.head(ns + "object.bin")
        assert isinstance(info, ObjectInfo)
        assert info.key == ns + "object.bin"
        assert info.size == _SIZE

    def test_read_whole_object(self, origin: OriginUnderTest, ns: str) -> None:
        data = payload(_SIZE, "whole")
        origin.put(ns + "object.bin", data)
        assert self.read_all(origin.adapter, ns + "object.bin") == data

    def test_zero_byte_object(self, origin: OriginUnderTest, ns: str) -> None:
        origin.put(ns + "empty", b"")
        assert origin.adapter.head(ns + "empty").size == 0
        assert self.read_all(origin.adapter, ns + "empty") == b""
        with pytest.raises(InvalidRange):
            origin.adapter.read(ns + "empty", range=ByteRange.from_offset(0))

    def test_streams_in_several_chunks(self, origin: OriginUnderTest, ns: str) -> None:
        data = payload(self.large_size, "large")
        origin.put(ns + "large.bin", data)
        stream = origin.adapter.read(ns + "large.bin")
        chunks = list(stream)
        assert len(chunks) > 1
        assert all(isinstance(chunk, bytes) and chunk for chunk in chunks)
        assert b"".join(chunks) == data

    def test_closing_a_stream_early_keeps_the_adapter_usable(
        self, origin: OriginUnderTest, ns: str
    ) -> None:
        data = payload(self.large_size, "early")
        origin.put(ns + "large.bin", data)
        origin.put(ns + "small.bin", b"small")
        for _ in range(3):
            stream = origin.adapter.read(ns + "large.bin")
            first = next(stream)
            assert data.startswith(first)
            stream.close()
        assert self.read_all(origin.adapter, ns + "small.bin") == b"small"

    # --- ranges --------------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("byte_range", "expected"),
        [pytest.param(r, s, id=name) for name, r, s in _RANGES],
    )
    def test_read_range(
        self, origin: OriginUnderTest, ns: str, byte_range: ByteRange, expected: slice
    ) -> None:
        data = payload(_SIZE, "range")
        origin.put(ns + "object.bin", data)
        assert self.read_all(origin.adapter, ns + "object.bin", range=byte_range) == data[expected]

    @pytest.mark.parametrize("byte_range", [pytest.param(r, id=name) for name, r in _BEYOND])
    def test_range_from_eof_is_invalid(
        self, origin: OriginUnderTest, ns: str, byte_range: ByteRange
    ) -> None:
        origin.put(ns + "object.bin", payload(_SIZE, "beyond"))
        with pytest.raises(InvalidRange):
            origin.adapter.read(ns + "object.bin", range=byte_range)

    # --- keys ----------------------------------------------------------------------------------

    @pytest.mark.parametrize("name", _KEYS)
    def test_awkward_keys(self, origin: OriginUnderTest, ns: str, name: str) -> None:
        data = payload(100, name)
        origin.put(ns + name, data)
        info = origin.adapter.head(ns + name)
        assert info.key == ns + name
        assert info.size == len(data)
        assert self.read_all(origin.adapter, ns + name) == data

    def test_encoded_slash_is_not_a_slash(self, origin: OriginUnderTest, ns: str) -> None:
        origin.put(ns + "a%2Fb", b"percent")
        origin.put(ns + "a/b", b"slash")
        assert self.read_all(origin.adapter, ns + "a%2Fb") == b"percent"
        assert self.read_all(origin.adapter, ns + "a/b") == b"slash"

    @pytest.mark.parametrize("key", _BAD_KEYS)
    def test_unsafe_keys_are_refused(self, origin: OriginUnderTest, key: str) -> None:
        adapter = origin.adapter
        with pytest.raises(InvalidKey):
            adapter.origin_uri(key)
        with pytest.raises(InvalidKey):
            adapter.head(key)
        with pytest.raises(InvalidKey):
            adapter.read(key)

    def test_origin_uri_percent_encodes(self, origin: OriginUnderTest, ns: str) -> None:
        uri = origin.adapter.origin_uri(ns + "a b+c%2Fd/é")
        assert uri.startswith("/")
        assert uri.endswith("/a%20b%2Bc%252Fd/%C3%A9")

    # --- metadata ------------------------------------------------------------------------------

    def test_standard_metadata_round_trips(self, origin: OriginUnderTest, ns: str) -> None:
        self.require("supports_standard_metadata")
        origin.put(
            ns + "report.txt",
            b"report",
            content_type="text/plain; charset=utf-8",
            cache_control="public, max-age=60",
            content_disposition='attachment; filename="report.txt"',
            content_language="de-CH",
        )
        info = origin.adapter.head(ns + "report.txt")
        assert info.content_type == "text/plain; charset=utf-8"
        assert info.cache_control == "public, max-age=60"
        assert info.content_disposition == 'attachment; filename="report.txt"'
        assert info.content_language == "de-CH"
        assert info.content_encoding is None

    def test_expires_round_trips(self, origin: OriginUnderTest, ns: str) -> None:
        self.require("supports_expires")
        origin.put(ns + "dated.txt", b"dated", expires="Wed, 21 Oct 2037 07:28:00 GMT")
        assert origin.adapter.head(ns + "dated.txt").expires == "Wed, 21 Oct 2037 07:28:00 GMT"

    def test_content_encoding_is_kept_not_decoded(self, origin: OriginUnderTest, ns: str) -> None:
        self.require("supports_standard_metadata")
        compressed = gzip.compress(b"hello, world\n" * 200, mtime=0)
        origin.put(ns + "page.html", compressed, content_type="text/html", content_encoding="gzip")
        info = origin.adapter.head(ns + "page.html")
        assert info.content_encoding == "gzip"
        assert info.content_type == "text/html"
        assert info.size == len(compressed)
        assert self.read_all(origin.adapter, ns + "page.html") == compressed
        first = self.read_all(origin.adapter, ns + "page.html", range=ByteRange.bounded(0, 10))
        assert first == compressed[:10]

    def test_user_metadata_round_trips(self, origin: OriginUnderTest, ns: str) -> None:
        self.require("supports_user_metadata")
        # Identifier-style names: the one form every store accepts (Azure requires it).
        origin.put(ns + "tagged", b"x", metadata={"color": "Blue", "owner_id": "42"})
        assert dict(origin.adapter.head(ns + "tagged").metadata) == {
            "color": "Blue",
            "owner_id": "42",
        }

    def test_stated_checksums_match_the_data(self, origin: OriginUnderTest, ns: str) -> None:
        data = payload(_SIZE, "checksums")
        origin.put(ns + "object.bin", data)
        stated = origin.adapter.head(ns + "object.bin").checksums.known()
        assert self.expected_checksums <= set(stated)
        for algorithm, digest in stated.items():
            assert digest == _DIGESTS[algorithm](data), f"{algorithm} does not match the data"

    # --- absence -------------------------------------------------------------------------------

    def test_missing_key_is_not_found(self, origin: OriginUnderTest, ns: str) -> None:
        with pytest.raises(ObjectNotFound) as caught:
            origin.adapter.head(ns + "missing")
        assert isinstance(caught.value, FileNotFoundError)
        with pytest.raises(ObjectNotFound):
            origin.adapter.read(ns + "missing")
        with pytest.raises(ObjectNotFound):
            origin.adapter.read(ns + "missing", range=ByteRange.bounded(0, 10))

    def test_deleted_key_is_not_found(self, origin: OriginUnderTest, ns: str) -> None:
        origin.put(ns + "gone", b"soon gone")
        origin.delete(ns + "gone")
        with pytest.raises(ObjectNotFound):
            origin.adapter.head(ns + "gone")

    # --- versions ------------------------------------------------------------------------------

    def test_read_pinned_to_the_current_version(self, origin: OriginUnderTest, ns: str) -> None:
        self.require("supports_versions")
        data = payload(_SIZE, "pinned")
        origin.put(ns + "object.bin", data)
        version = origin.adapter.head(ns + "object.bin").version
        assert version
        assert self.read_all(origin.adapter, ns + "object.bin", version=version) == data
        part = self.read_all(
            origin.adapter, ns + "object.bin", range=ByteRange.bounded(5, 50), version=version
        )
        assert part == data[5:50]

    def test_read_pinned_to_a_replaced_version_fails(
        self, origin: OriginUnderTest, ns: str
    ) -> None:
        self.require("supports_versions")
        old, new = payload(_SIZE, "old"), payload(_SIZE, "new")  # same size on purpose
        origin.put(ns + "object.bin", old)
        version = origin.adapter.head(ns + "object.bin").version
        assert version
        origin.replace(ns + "object.bin", new)
        with pytest.raises(PreconditionFailed):
            self.read_all(origin.adapter, ns + "object.bin", version=version)
        with pytest.raises(PreconditionFailed):
            self.read_all(
                origin.adapter, ns + "object.bin", range=ByteRange.bounded(0, 10), version=version
            )
        current = origin.adapter.head(ns + "object.bin").version
        assert current
        assert current != version
        assert self.read_all(origin.adapter, ns + "object.bin", version=current) == new
        assert self.read_all(origin.adapter, ns + "object.bin") == new

    # --- the read contract: get_once → GetResult ------------------------------------------------

    def test_readinto_fills_the_callers_buffer(self, origin: OriginUnderTest, ns: str) -> None:
        data = payload(self.large_size, "readinto")
        origin.put(ns + "large.bin", data)
        window = ByteRange.bounded(100, self.large_size - 100)
        buffer = bytearray(self.large_size - 200)
        view = memoryview(buffer)
        with origin.adapter.get(ns + "large.bin", GetOptions(range=window)) as result:
            assert isinstance(result, GetResult)
            assert result.range == (100, self.large_size - 100)
            filled = 0
            while filled < len(buffer):
                count = result.readinto(view[filled:])
                assert count > 0, "readinto returned 0 before the window's end"
                filled += count
            assert result.readinto(bytearray(10)) == 0
        assert buffer == data[100:-100]

    @pytest.mark.parametrize(
        ("byte_range", "expected"),
        [pytest.param(r, s, id=name) for name, r, s in _RANGES],
    )
    def test_the_range_served_is_stated(
        self, origin: OriginUnderTest, ns: str, byte_range: ByteRange, expected: slice
    ) -> None:
        origin.put(ns + "object.bin", payload(_SIZE, "served"))
        start, stop, _ = expected.indices(_SIZE)
        with origin.adapter.get(ns + "object.bin", GetOptions(range=byte_range)) as result:
            assert result.range == (start, stop)
            assert result.size == stop - start
            assert result.info.size == _SIZE

    def test_get_states_what_head_states(self, origin: OriginUnderTest, ns: str) -> None:
        meta: ObjectMeta = {}
        if self.supports_standard_metadata is True:
            meta["content_type"] = "text/plain"
            meta["cache_control"] = "max-age=60"
        if self.supports_user_metadata is True:
            meta["metadata"] = {"color": "Blue"}
        origin.put(ns + "object.bin", payload(_SIZE, "get-head"), **meta)
        head = origin.adapter.head(ns + "object.bin")
        with origin.adapter.get(ns + "object.bin") as whole:
            got = whole.info
        for name in _GET_LIKE_HEAD:
            assert getattr(got, name) == getattr(head, name), f"GET and HEAD differ in {name}"
        # A ranged answer describes the whole object too (its checksums may be left out).
        ranged = GetOptions(range=ByteRange.bounded(10, 20))
        with origin.adapter.get(ns + "object.bin", ranged) as part:
            for name in _GET_LIKE_HEAD:
                if name != "checksums":
                    assert getattr(part.info, name) == getattr(head, name), name

    def test_a_get_pinned_to_a_replaced_object_fails(
        self, origin: OriginUnderTest, ns: str
    ) -> None:
        self.require("supports_versions")
        old, new = payload(_SIZE, "pin-old"), payload(_SIZE, "pin-new")  # same size
        origin.put(ns + "object.bin", old)
        pin = origin.adapter.head(ns + "object.bin")
        origin.replace(ns + "object.bin", new)
        for window in (None, ByteRange.bounded(0, 10), ByteRange.suffix(10)):
            with pytest.raises(PreconditionFailed):
                origin.adapter.get(ns + "object.bin", GetOptions(range=window, pin=pin))
        # And the primitive itself refuses it, or states another version.
        try:
            raw = origin.adapter.get_once(ns + "object.bin", GetOptions(pin=pin))
        except PreconditionFailed:
            return
        raw.body.close()
        assert (raw.info.version, raw.info.etag) != (pin.version, pin.etag)

    def test_a_dropped_body_resumes_from_its_first_missing_byte(
        self, origin: OriginUnderTest, ns: str
    ) -> None:
        data = payload(_SIZE * 20, "resume")
        origin.put(ns + "object.bin", data)
        calls: list[GetOptions] = []
        get_once = _dropping_get(origin.adapter, ns + "object.bin", 7_000, calls)
        window = ByteRange.bounded(1_000, 15_000)
        options = GetOptions(range=window)
        with GetResult(get_once, options, "conformance", sleep=_no_pause) as result:
            assert result.readall() == data[1_000:15_000]
            assert result.resumes == 1
        assert len(calls) == 2
        resumed = calls[1]
        assert resumed.range == ByteRange.bounded(8_000, 15_000)
        assert resumed.pin is not None  # pinned to what the first answer described
        assert resumed.pin.size == len(data)

    def test_a_resume_after_a_replacement_fails(self, origin: OriginUnderTest, ns: str) -> None:
        self.require("supports_versions")
        old = payload(_SIZE * 20, "resume-old")
        origin.put(ns + "object.bin", old)
        calls: list[GetOptions] = []
        get_once = _dropping_get(origin.adapter, ns + "object.bin", 5_000, calls)
        with GetResult(get_once, GetOptions(), "conformance", sleep=_no_pause) as result:
            buffer = bytearray(len(old))
            view = memoryview(buffer)
            filled = 0
            while filled < 5_000:
                filled += result.readinto(view[filled:5_000])
            origin.replace(ns + "object.bin", payload(_SIZE * 20, "resume-new"))
            with pytest.raises(PreconditionFailed):
                result.readinto(view[filled:])
        assert buffer[:5_000] == old[:5_000]

    # --- listing -------------------------------------------------------------------------------

    def test_list_prefix(self, origin: OriginUnderTest, ns: str) -> None:
        adapter = origin.adapter
        if self.supports_list is not True:
            with pytest.raises(NotSupported):
                next(iter(adapter.list(ns)))
            return
        for name, size in (("dir/a", 1), ("dir/b/c", 2), ("dir/d", 3), ("dirt", 4)):
            origin.put(ns + name, b"x" * size)
        listed = {info.key: info.size for info in adapter.list(ns + "dir/")}
        assert listed == {ns + "dir/a": 1, ns + "dir/b/c": 2, ns + "dir/d": 3}
        assert {info.key for info in adapter.list(ns)} == {*listed, ns + "dirt"}
        assert list(adapter.list(ns + "nothing-here/")) == []

    # --- edge plane ----------------------------------------------------------------------------

    def test_cloudfront_origin_is_plausible(self, origin: OriginUnderTest) -> None:
        spec = origin.adapter.cloudfront_origin()
        assert isinstance(spec, OriginSpec)
        assert spec.domain
        assert "/" not in spec.domain
        assert ":" not in spec.domain
        assert spec.path == "" or (spec.path.startswith("/") and not spec.path.endswith("/"))
        assert spec.protocol in ("http", "https")
        assert 0 < spec.port < 65536
