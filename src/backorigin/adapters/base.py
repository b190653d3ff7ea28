"""The origin adapter contract.

An adapter has two faces (see the architecture notes in the README):

* the **data plane**, used by the copy engine and prewarm: :meth:`OriginAdapter.head`,
  :meth:`OriginAdapter.read` (streamed, ranged, pinned to one version) and
  :meth:`OriginAdapter.list`;
* the **edge plane**, used by the CDK construct and the Lambda@Edge function:
  :meth:`OriginAdapter.cloudfront_origin`, :meth:`OriginAdapter.origin_uri` and
  :meth:`OriginAdapter.sign`.

Implementers override the abstract methods only; everything else is built on them.
"""

from __future__ import annotations

__all__ = ["ObjectStream", "OriginAdapter", "require"]

import abc
import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import ClassVar, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote

from backorigin.config.origins import OriginConfig
from backorigin.config.secrets import SecretResolver
from backorigin.errors import MissingExtra, NotSupported
from backorigin.keys import validate_key
from backorigin.types import ByteRange, ObjectInfo, OriginRequest, OriginSpec

ConfigT = TypeVar("ConfigT", bound=OriginConfig)


@runtime_checkable
class ObjectStream(Protocol):
    """The bytes of an object (or a range of it), in chunks; a generator satisfies it.

    Close it when stopping early, to release the connection.
    """

    def __iter__(self) -> Iterator[bytes]: ...

    def __next__(self) -> bytes: ...

    def close(self) -> None: ...


def require(module: str, extra: str) -> ModuleType:
    """Import an optional SDK, or raise :class:`MissingExtra` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(extra, module) from exc


class OriginAdapter(abc.ABC, Generic[ConfigT]):
    """Reads objects from one origin and tells CloudFront how to reach it.

    Subclasses set ``config_model`` to their config class and are registered in the
    ``backorigin.adapters`` entry-point group under the config's ``type``.

    Args:
        config: The origin's validated config.
        secrets: Resolves the config's secret references (default: a fresh resolver).
    """

    config_model: ClassVar[type[OriginConfig]]

    def __init__(self, config: ConfigT, *, secrets: SecretResolver | None = None) -> None:
        self.config = config
        self.secrets = secrets if secrets is not None else SecretResolver()

    @property
    def name(self) -> str:
        """The origin's name from the config."""
        return self.config.name

    # --- data plane -------------------------------------------------------------------------

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key`` (origin prefix is applied by the adapter).

        Raises:
            ObjectNotFound, PermissionDenied, Unauthenticated, TransientOriginError.
        """

    @abc.abstractmethod
    def read(
        self, key: str, range: ByteRange | None = None, version: str | None = None
    ) -> ObjectStream:
        """Stream the bytes of ``key``, or of ``range`` of it.

        Failures the origin reports up front (not found, changed version, unsatisfiable
        range) are raised by this call itself, before any chunk is yielded.

        Args:
            key: The origin-side key (before the adapter's prefix).
            range: Which bytes; the end is clamped at EOF.
            version: An :attr:`ObjectInfo.version` token; the read fails with
                :class:`PreconditionFailed` if the object is no longer that version.

        Raises:
            ObjectNotFound, PreconditionFailed, InvalidRange, PermissionDenied,
            Unauthenticated, TransientOriginError (also while iterating).
        """

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, paginated lazily.

        Keys in the results are relative to the adapter's configured prefix, like the keys
        :meth:`head` takes.

        Raises:
            NotSupported: the origin cannot be listed (the default).
        """
        raise NotSupported(f"origin {self.name!r} ({self.config.type}) cannot be listed")

    def close(self) -> None:
        """Release pooled connections. The adapter must not be used afterwards."""

    # --- edge plane -------------------------------------------------------------------------

    @abc.abstractmethod
    def cloudfront_origin(self) -> OriginSpec:
        """The CloudFront origin (domain, origin path, protocol, port) for this store."""

    def origin_uri(self, key: str) -> str:
        """The request URI below :meth:`cloudfront_origin`'s path for ``key``.

        The key (with the configured prefix) is validated and percent-encoded segment by
        segment, so no key can climb out of the origin path.
        """
        validate_key(key)
        full = validate_key(self.config.prefix + key)
        return "/" + quote(full, safe="/")

    def sign(self, request: OriginRequest) -> OriginRequest:
        """What an origin-request trigger must add for an authenticated origin.

        The default adds nothing (public origins).
        """
        return request

    # --- conveniences built on the contract ------------------------------------------------

    def read_bytes(
        self, key: str, range: ByteRange | None = None, version: str | None = None
    ) -> bytes:
        """The whole object (or range) in memory; for small objects and tests."""
        stream = self.read(key, range=range, version=version)
        try:
            return b"".join(stream)
        finally:
            stream.close()

    def __enter__(self) -> OriginAdapter[ConfigT]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
