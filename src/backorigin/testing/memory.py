"""An in-memory origin: the reference implementation of the adapter contract, for tests.

:class:`MemoryAdapter` keeps objects in a dict, with a generation number per write as the
version token, and honours the whole contract (ranges, pinned reads, listing, checksums). It
is not registered as an entry point; register it where a test needs it by type name::

    from backorigin.adapters import register_adapter
    register_adapter("memory", MemoryAdapter)
"""

from __future__ import annotations

__all__ = ["MemoryAdapter", "MemoryOrigin"]

import hashlib
import itertools
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import ClassVar, Literal

from backorigin.adapters.base import OriginAdapter
from backorigin.adapters.read import RawGet
from backorigin.config.origins import OriginConfig
from backorigin.config.secrets import SecretResolver
from backorigin.errors import ObjectNotFound, PreconditionFailed
from backorigin.keys import validate_key
from backorigin.types import Checksums, GetOptions, ObjectInfo, OriginSpec


class MemoryOrigin(OriginConfig):
    """Config of an in-memory origin (only the common fields)."""

    type: Literal["memory"] = "memory"


class MemoryAdapter(OriginAdapter[MemoryOrigin]):
    """An origin whose objects live in this process; thread-safe.

    Keys given to :meth:`put` and :meth:`delete` are like those :meth:`head` takes: the
    config's ``prefix`` is applied to all of them.

    Args:
        config: The config; ``MemoryOrigin(name="memory")`` if not given.
        secrets: Unused; accepted like every adapter's.
        chunk_size: The most bytes one ``readinto`` of a read's body delivers (so reads
            come in several pieces, as from a network).
    """

    config_model: ClassVar[type[MemoryOrigin]] = MemoryOrigin

    def __init__(
        self,
        config: MemoryOrigin | None = None,
        *,
        secrets: SecretResolver | None = None,
        chunk_size: int = 64 * 1024,
    ) -> None:
        super().__init__(config or MemoryOrigin(name="memory"), secrets=secrets)
        self.chunk_size = chunk_size
        self._lock = threading.Lock()
        self._objects: dict[str, tuple[bytes, ObjectInfo]] = {}
        self._generations = itertools.count(1)

    # --- seeding -----------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        content_encoding: str | None = None,
        cache_control: str | None = None,
        content_disposition: str | None = None,
        content_language: str | None = None,
        expires: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store ``data`` as a new version of ``key``; returns what :meth:`head` will say."""
        full = validate_key(self.config.prefix + key)
        data = bytes(data)
        with self._lock:
            generation = str(next(self._generations))
            info = ObjectInfo(
                key=key,
                size=len(data),
                etag=f'"{generation}"',
                version=generation,
                last_modified=datetime.now(UTC),
                content_type=content_type,
                content_encoding=content_encoding,
                cache_control=cache_control,
                content_disposition=content_disposition,
                content_language=content_language,
                expires=expires,
                metadata=MappingProxyType({k.lower(): v for k, v in (metadata or {}).items()}),
                checksums=Checksums(
                    md5=hashlib.md5(data).digest(),  # noqa: S324 - a checksum, not security
                    sha256=hashlib.sha256(data).digest(),
                ),
            )
            self._objects[full] = (data, info)
        return info

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it does not exist)."""
        with self._lock:
            self._objects.pop(self.config.prefix + key, None)

    # --- contract ------------------------------------------------------------------------------

    def _get(self, key: str) -> tuple[bytes, ObjectInfo]:
        full = validate_key(self.config.prefix + key)
        with self._lock:
            found = self._objects.get(full)
        if found is None:
            raise ObjectNotFound(f"{key!r} is not in origin {self.name!r}")
        return found

    def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key``."""
        return self._get(key)[1]

    def get_once(self, key: str, options: GetOptions) -> RawGet:
        """One read of ``key``: the stored bytes of ``options.range``, as a 206 would be.

        The pin is honoured as a generation precondition, the way a store with versions
        does it; the shared read path checks the rest.
        """
        data, info = self._get(key)
        pin = options.pin
        if pin is not None and pin.version is not None and pin.version != info.version:
            raise PreconditionFailed(
                f"{key!r} in origin {self.name!r} is at version {info.version}, not {pin.version}"
            )
        if options.range is None:
            return RawGet(body=_MemoryBody(data, 0, len(data), self.chunk_size), info=info)
        start, stop = options.range.resolve(len(data))
        return RawGet(
            body=_MemoryBody(data, start, stop, self.chunk_size), info=info, served=(start, stop)
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, sorted by key."""
        full = self.config.prefix + prefix
        with self._lock:
            snapshot = sorted(
                (name, info) for name, (_, info) in self._objects.items() if name.startswith(full)
            )
        for name, info in snapshot:
            yield replace(info, key=name[len(self.config.prefix) :])

    def cloudfront_origin(self) -> OriginSpec:
        """A placeholder: CloudFront cannot reach a process's memory (``.invalid`` domain)."""
        return OriginSpec(domain="memory.invalid", protocol="https")


class _MemoryBody:
    """Bytes ``[start, stop)`` of a stored object, at most ``chunk_size`` per ``readinto``."""

    def __init__(self, data: bytes, start: int, stop: int, chunk_size: int = 64 * 1024) -> None:
        self._view = memoryview(data)[start:stop]
        self._chunk_size = chunk_size

    def readinto(self, buffer: memoryview) -> int:
        count = min(len(buffer), len(self._view), self._chunk_size)
        buffer[:count] = self._view[:count]
        self._view = self._view[count:]
        return count

    def close(self) -> None:
        self._view = memoryview(b"")
