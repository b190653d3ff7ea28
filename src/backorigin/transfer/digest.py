"""Whole-object digests, computed while streaming and compared with what the origin states."""

from __future__ import annotations

__all__ = ["ObjectDigests", "crc32c"]

import hashlib
import zlib
from typing import Any

from awscrt import checksums

from backorigin.types import Checksums


def crc32c(data: bytes | bytearray | memoryview, previous: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from ``previous``; as S3 and GCS use it."""
    return int(checksums.crc32c(data, previous))


class _Crc:
    def __init__(self, function: Any) -> None:
        self._function = function
        self._value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._value = self._function(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


class ObjectDigests:
    """Running digests of the algorithms an origin states, fed the object's bytes in order."""

    def __init__(self, expected: Checksums) -> None:
        self.expected = expected
        self.size = 0
        self._running: dict[str, Any] = {}
        for name in expected.known():
            if name == "crc32c":
                self._running[name] = _Crc(crc32c)
            elif name == "crc32":
                self._running[name] = _Crc(zlib.crc32)
            else:
                self._running[name] = hashlib.new(name)

    @property
    def needs_bytes(self) -> bool:
        """Whether any digest is computed (otherwise only :attr:`size` is counted)."""
        return bool(self._running)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes of the object."""
        self.size += len(data)
        for running in self._running.values():
            running.update(data)

    def mismatches(self) -> list[str]:
        """The algorithms whose digest differs from the origin's statement."""
        known = self.expected.known()
        return [name for name, running in self._running.items() if running.digest() != known[name]]
