"""``type: directory``: files on a local disk, published by a web server for CloudFront."""

from __future__ import annotations

import mimetypes
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, BinaryIO, Literal
from urllib.parse import urlsplit

from pydantic import Field

from backorigin.adapters import OriginAdapter, RawGet, extra_requirements
from backorigin.config import OriginConfig, SecretRef
from backorigin.config.origins import AuthMode
from backorigin.errors import NotSupported, ObjectNotFound
from backorigin.keys import validate_key
from backorigin.types import (
    DeploymentNeeds,
    FunctionRole,
    GetOptions,
    IamStatement,
    ObjectInfo,
    OriginRequest,
    OriginSpec,
)

__all__ = ["DirectoryAdapter", "DirectoryJwtAuth", "DirectoryNoAuth", "DirectoryOrigin"]

DISTRIBUTION = "backorigin-directory"
"""This package's distribution name: its ``edge`` extra lists what the edge function needs."""


class DirectoryNoAuth(AuthMode):
    """The web server serves anyone (the default)."""

    mode: Literal["none"] = "none"


class DirectoryJwtAuth(AuthMode):
    """CloudFront's requests carry ``Authorization: Bearer <JWT>``, signed with HS256.

    The web server checks the token (nginx's ``auth_jwt``, a small verifier, …), so only
    CloudFront is served. The edge function signs each request with PyJWT; the fetcher reads
    the disk and needs neither the key nor PyJWT.
    """

    mode: Literal["jwt"]
    key: SecretRef
    lifetime: int = Field(default=300, ge=30, le=3600, description="Seconds a token is valid.")


DirectoryAuth = Annotated[DirectoryNoAuth | DirectoryJwtAuth, Field(discriminator="mode")]


class DirectoryOrigin(OriginConfig):
    """Config of a directory origin."""

    type: Literal["directory"]
    root: str
    public_url: str
    auth: DirectoryAuth = Field(default_factory=DirectoryNoAuth)
    file_system_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:elasticfilesystem:[a-z0-9-]+:\d{12}:file-system/fs-[0-9a-f]+$",
        description="The EFS file system mounted at root in the fetcher, when it is one.",
    )

    def cloudfront_urls(self) -> dict[str, str]:
        return {"public_url": self.public_url}


def _token(stat: os.stat_result) -> str:
    # Inode + mtime + size: a file replaced by rename or rewritten in place gets a new token.
    return f"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"


class DirectoryAdapter(OriginAdapter[DirectoryOrigin]):
    """Reads files below ``root``; CloudFront fetches them from ``public_url``."""

    config_model = DirectoryOrigin

    @classmethod
    def deployment(cls, config: DirectoryOrigin, role: FunctionRole) -> DeploymentNeeds:
        """PyJWT (and the signing key) at the edge when it signs; EFS mount rights for the fetcher.

        The packages come from this distribution's ``edge`` extra, so their versions are
        written once, in ``pyproject.toml``. ``elasticfilesystem:ClientMount`` is what a
        Lambda function mounting the file system with IAM authorization needs for read
        access; attaching the file system to the fetcher (VPC, access point) is the app's.
        """
        if role == "edge":
            if isinstance(config.auth, DirectoryJwtAuth):
                return DeploymentNeeds(
                    packages=extra_requirements("edge", distribution=DISTRIBUTION)
                )
            return DeploymentNeeds()
        # The fetcher reads the disk: it never resolves the signing key.
        if config.file_system_arn is None:
            return DeploymentNeeds(reads_secrets=False)
        mount = IamStatement(
            actions=["elasticfilesystem:ClientMount"],
            resources=[config.file_system_arn],
            # Only through the file system's mount targets, as a Lambda function mounts it.
            conditions={"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}},
        )
        return DeploymentNeeds(statements=[mount], reads_secrets=False)

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

    def get_once(self, key: str, options: GetOptions) -> RawGet:
        # The one read primitive: open the file, say what it is and which bytes follow.
        # backorigin checks the pin against `info`, cuts and checks the window, and resumes.
        path = self._path(key)
        try:
            handle = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(f"{key!r} is not in {self.config.root}") from exc
        try:
            info = self._info(key, os.fstat(handle.fileno()))  # this very file, not the path
            if options.range is None:
                start, stop, served = 0, info.size, None
            else:
                start, stop = options.range.resolve(info.size)
                served = (start, stop)
            handle.seek(start)
        except BaseException:
            handle.close()
            raise
        return RawGet(body=_FileBody(handle, stop - start), info=info, served=served)

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

    def sign(self, request: OriginRequest) -> OriginRequest:
        """Add a short-lived JWT naming the request's path, when ``auth`` is ``jwt``."""
        auth = self.config.auth
        if not isinstance(auth, DirectoryJwtAuth):
            return request
        import jwt  # only the edge signs: the fetcher's bundle does not carry PyJWT

        now = int(time.time())
        claims = {"sub": request.uri, "iat": now, "exp": now + auth.lifetime}
        key = self.secrets.resolve(auth.key).get_secret_value()
        token = jwt.encode(claims, key, algorithm="HS256")
        return request.with_headers({"authorization": f"Bearer {token}"})

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


class _FileBody:
    """The next ``remaining`` bytes of an open file."""

    def __init__(self, handle: BinaryIO, remaining: int) -> None:
        self._handle = handle
        self._remaining = remaining

    def readinto(self, buffer: memoryview) -> int:
        count = self._handle.readinto(buffer[: self._remaining]) if self._remaining else 0
        self._remaining -= count
        return count

    def close(self) -> None:
        self._handle.close()
