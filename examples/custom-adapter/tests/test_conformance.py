"""backorigin's shipped conformance suite, run against the directory adapter."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backorigin_directory import DirectoryAdapter, DirectoryOrigin

from backorigin.adapters import adapter_class, create_adapter
from backorigin.config import load_config
from backorigin.testing.conformance import AdapterConformance


class DirectoryUnderTest:
    def __init__(self, adapter: DirectoryAdapter, root: Path) -> None:
        self.adapter = adapter
        self.root = root

    def _file(self, key: str) -> Path:
        return self.root / (self.adapter.config.prefix + key)

    def put(self, key: str, data: bytes, **meta: Any) -> None:
        path = self._file(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(path.name + ".tmp")
        staging.write_bytes(data)
        os.replace(staging, path)  # a new inode: a new version

    def replace(self, key: str, data: bytes) -> None:
        self.put(key, data)

    def delete(self, key: str) -> None:
        self._file(key).unlink(missing_ok=True)


class TestDirectoryAdapter(AdapterConformance):
    supports_user_metadata = "a directory keeps no per-file user metadata"
    supports_standard_metadata = "a directory keeps no Cache-Control, Content-Language, …"
    supports_expires = "a directory keeps no Expires"

    @pytest.fixture
    def origin(self, tmp_path: Path) -> Iterator[DirectoryUnderTest]:
        config = DirectoryOrigin(
            name="disk",
            type="directory",
            root=str(tmp_path),
            prefix="site/",
            public_url="https://media.example.com/files/",
        )
        with DirectoryAdapter(config) as adapter:
            yield DirectoryUnderTest(adapter, tmp_path)


def test_registered_through_its_entry_point() -> None:
    assert adapter_class("directory") is DirectoryAdapter


def test_the_example_config_loads_and_builds_the_adapter() -> None:
    config = load_config(Path(__file__).parent.parent / "directory-origin.yaml")
    adapter = create_adapter(config.origins[0])
    assert isinstance(adapter, DirectoryAdapter)
    spec = adapter.cloudfront_origin()
    assert (spec.domain, spec.path, spec.port) == ("media.example.com", "", 443)
