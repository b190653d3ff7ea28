"""The conformance suite against HttpAdapter over a real local aiohttp origin."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from backorigin.adapters.http import HttpAdapter
from backorigin.testing.conformance import AdapterConformance
from backorigin.testing.http_origin import HttpOriginServer, object_headers

BASE = "conformance/"  # the origin's base_url path below the server root
PREFIX = "pfx/"  # the origin's key prefix
METADATA_PREFIX = "x-meta-"
MakeAdapter = Callable[..., HttpAdapter]


class HttpOriginUnderTest:
    """Seeds the local server the way a real HTTP origin states metadata and digests."""

    def __init__(self, server: HttpOriginServer, adapter: HttpAdapter) -> None:
        self.server = server
        self.adapter = adapter

    def _path(self, key: str) -> str:
        return BASE + PREFIX + key

    def put(self, key: str, data: bytes, **meta: Any) -> None:
        headers = object_headers(data, metadata_prefix=METADATA_PREFIX, **meta)
        self.server.put(self._path(key), data, headers=headers)

    def replace(self, key: str, data: bytes) -> None:
        self.server.replace(self._path(key), data, headers=object_headers(data))

    def delete(self, key: str) -> None:
        self.server.delete(self._path(key))


class TestHttpAdapterConformance(AdapterConformance):
    supports_list = "a plain HTTP server has no listing API"
    expected_checksums = frozenset({"md5", "sha256"})

    @pytest.fixture
    def server(self, origin_server: HttpOriginServer) -> HttpOriginServer:
        return origin_server

    @pytest.fixture
    def origin(
        self, server: HttpOriginServer, make_http_adapter: MakeAdapter
    ) -> HttpOriginUnderTest:
        adapter = make_http_adapter(
            base_url=server.url + BASE, prefix=PREFIX, metadata_header_prefix=METADATA_PREFIX
        )
        return HttpOriginUnderTest(server, adapter)


@pytest.fixture(scope="module")
def weak_etag_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpOriginServer]:
    root: Path = tmp_path_factory.mktemp("weak-origin")
    with HttpOriginServer(root, weak_etags=True) as server:
        yield server


class TestHttpAdapterConformanceWeakEtags(TestHttpAdapterConformance):
    """The same suite against a server whose ETags are weak: reads are pinned by
    Last-Modified and size instead of If-Match."""

    @pytest.fixture
    def server(self, weak_etag_server: HttpOriginServer) -> HttpOriginServer:
        return weak_etag_server

    def test_versions_are_last_modified_tokens(self, origin: HttpOriginUnderTest, ns: str) -> None:
        origin.put(ns + "object.bin", b"data")
        info = origin.adapter.head(ns + "object.bin")
        assert info.etag is not None
        assert info.etag.startswith("W/")
        assert info.last_modified is not None
        assert info.version == format_datetime(info.last_modified, usegmt=True)
