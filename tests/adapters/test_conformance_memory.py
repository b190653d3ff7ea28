"""The conformance suite against the in-memory reference adapter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from backorigin.adapters import create_adapter, register_adapter
from backorigin.testing.conformance import AdapterConformance
from backorigin.testing.memory import MemoryAdapter, MemoryOrigin


class MemoryOriginUnderTest:
    def __init__(self, adapter: MemoryAdapter) -> None:
        self.adapter = adapter

    def put(self, key: str, data: bytes, **meta: Any) -> None:
        self.adapter.put(key, data, **meta)

    def replace(self, key: str, data: bytes) -> None:
        self.adapter.put(key, data)

    def delete(self, key: str) -> None:
        self.adapter.delete(key)


class TestMemoryAdapterConformance(AdapterConformance):
    expected_checksums = frozenset({"md5", "sha256"})

    @pytest.fixture
    def origin(self) -> Iterator[MemoryOriginUnderTest]:
        config = MemoryOrigin(name="memory", prefix="pfx/")
        with MemoryAdapter(config, chunk_size=256 * 1024) as adapter:
            assert isinstance(adapter, MemoryAdapter)
            yield MemoryOriginUnderTest(adapter)


@pytest.mark.usefixtures("clean_registry")
def test_memory_adapter_registers_by_type_name() -> None:
    register_adapter("memory", MemoryAdapter)
    adapter = create_adapter(MemoryOrigin(name="scratch"))
    assert isinstance(adapter, MemoryAdapter)
    assert adapter.name == "scratch"
