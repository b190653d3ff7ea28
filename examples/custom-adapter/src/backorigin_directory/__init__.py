"""``type: directory``: files on a local disk, published by a web server for CloudFront."""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from backorigin.adapters import ObjectStream, OriginAdapter
from backorigin.config import OriginConfig
from backorigin.errors import NotSupported, ObjectNotFound, PreconditionFailed
from backorigin.keys import validate_key
from backorigin.types import ByteRange, ObjectInfo, OriginSpec

__all__ = ["DirectoryAdapter", "DirectoryOrigin"]

_CHUNK = 1024 * 1024


class DirectoryOrigin(OriginConfig):
    """Config of a directory origin."""

    type: Literal["directory"]
    root: str
    public_url: str


def _token(stat: os.stat_result) -> str:
    # Inode + mtime + size: a file replaced by rename or rewritten in place gets a new token.
    return f"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"


class DirectoryAdapter(OriginAdapter[DirectoryOrigin]):
    """Reads files below ``root``; CloudFront fetches them from ``public_url``."""

    config_model = DirectoryOrigin

    def _path(self, key: str) -> Path:
        relative = validate_key(self.config.prefix + validate_key(key))
        root = Path(self.config.root).resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):  # a symlink pointing out of the root
            raise ObjectNotFound(f"{key!r} is outside the origin's root")
        return path

    def _info(self, key: str, stat: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            etag=f'"{_token(stat)}"',
            version=_token(stat),
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
            content_type=mimetypes.guess_type(key)[0],
        )

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"{key!r} is not in {self.config.root}") from exc
        if not path.is_file():
            raise ObjectNotFound(f"{key!r} is not a file")
        return self._info(key, stat)

    def read(
        self, key: str, range: ByteRange | None = None, version: str | None = None
    ) -> ObjectStream:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(f"{key!r} is not in {self.config.root}") from exc
        try:
            stat = os.fstat(handle.fileno())
            if version is not None and _token(stat) != version:
                raise PreconditionFailed(f"{key!r} changed since version {version}")
            start, stop = range.resolve(stat.st_size) if range else (0, stat.st_size)
            handle.seek(start)
        except BaseException:
            handle.close()
            raise
        return self._stream(handle, stop - start)

    @staticmethod
    def _stream(handle: object, remaining: int) -> Generator[bytes]:
        with handle:  # type: ignore[attr-defined]
            while remaining > 0:
                chunk = handle.read(min(_CHUNK, remaining))  # type: ignore[attr-defined]
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = Path(self.config.root).resolve()
        origin_prefix = self.config.prefix
        for directory, subdirs, files in os.walk(base):
            subdirs.sort()
            for name in sorted(files):
                full = Path(directory, name).relative_to(base).as_posix()
                if not full.startswith(origin_prefix):
                    continue
                key = full[len(origin_prefix) :]
                if key.startswith(prefix):
                    yield self._info(key, Path(directory, name).stat())

    def cloudfront_origin(self) -> OriginSpec:
        parts = urlsplit(self.config.public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NotSupported("public_url must be an http(s) URL CloudFront can reach")
        protocol: Literal["http", "https"] = "https" if parts.scheme == "https" else "http"
        return OriginSpec(
            domain=parts.hostname,
            path=parts.path.rstrip("/"),
            protocol=protocol,
            port=parts.port or (443 if protocol == "https" else 80),
        )
