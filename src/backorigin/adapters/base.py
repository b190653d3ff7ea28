"""The origin adapter contract.

An adapter has two faces (see the architecture notes in the README):

* the **data plane**, used by the copy engine and prewarm: :meth:`OriginAdapter.head`,
  :meth:`OriginAdapter.get_once` (the read primitive: one ranged, pinned GET), on which
  :meth:`OriginAdapter.get` builds the checked, resuming read, and :meth:`OriginAdapter.list`;
* the **edge plane**, used by the CDK construct and the Lambda@Edge function:
  :meth:`OriginAdapter.cloudfront_origin`, :meth:`OriginAdapter.origin_uri` and
  :meth:`OriginAdapter.sign`;
* the **deployment face**, read by bundling and the CDK construct:
  :meth:`OriginAdapter.deployment` (packages and IAM statements per Lambda function), a class
  method that imports no SDK, so a deployment is planned without the adapter's extra.

Implementers override the abstract methods only; everything else is built on them.
"""

from __future__ import annotations

__all__ = [
    "EDGE_SIGNING_KINDS",
    "ObjectStream",
    "OriginAdapter",
    "extra_requirements",
    "package_requirements",
    "require",
    "secret_reference",
]

import abc
import functools
import importlib
import re
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote

from backorigin.adapters.read import RESUME_ATTEMPTS, GetResult, RawGet, open_get
from backorigin.config.origins import OriginConfig
from backorigin.config.secrets import SecretRef, SecretResolver
from backorigin.errors import MissingExtra, NotSupported
from backorigin.keys import validate_key
from backorigin.types import (
    ByteRange,
    DeploymentNeeds,
    FunctionRole,
    GetOptions,
    ObjectInfo,
    OriginRequest,
    OriginSpec,
)

ConfigT = TypeVar("ConfigT", bound=OriginConfig)
_CHUNK_SIZE = 256 * 1024  # chunks an iterated GetResult yields, unless the adapter says

EDGE_SIGNING_KINDS = frozenset({"headers", "azure_sas", "gcs_hmac", "gcs_rsa"})
"""The kinds of edge signing recipe the edge function applies without adapters
(:mod:`backorigin.handlers.edge_signing` documents each one's fields)."""


def secret_reference(ref: SecretRef) -> dict[str, str]:
    """A secret reference as plain JSON data for an edge recipe (never its value).

    ``{"env": NAME}``, ``{"file": PATH}`` or ``{"aws_secretsmanager": ID}`` with ``"key"``
    when the reference picks a field; the edge function resolves it with the standard library
    (:mod:`backorigin.handlers.edge_secrets`), cached as :class:`SecretResolver` caches.
    """
    source = ref.secret
    fields = {
        "env": source.env,
        "file": source.file,
        "aws_secretsmanager": source.aws_secretsmanager,
        "key": source.key,
    }
    return {name: value for name, value in fields.items() if value is not None}


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


@functools.cache
def package_requirements(distribution: str) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """An installed distribution's requirements: its core ones and those of each extra.

    Requirements whose marker is not about an extra (``; python_version < "3.12"``) are
    left out: they are the installer's business, not a bundle's.

    Raises:
        importlib.metadata.PackageNotFoundError: the distribution is not installed.
    """
    # Deferred: importlib.metadata costs tens of milliseconds, and only bundling asks.
    import importlib.metadata

    core: list[str] = []
    extras: dict[str, list[str]] = {}
    for line in importlib.metadata.requires(distribution) or []:
        requirement, _, marker = line.partition(";")
        found = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if found:
            extras.setdefault(found.group(1), []).append(requirement.strip())
        elif not marker.strip():
            core.append(requirement.strip())
    return tuple(core), {name: tuple(found) for name, found in extras.items()}


def _project_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    return re.sub(r"[-_.]+", "-", match.group(0) if match else requirement).lower()


def extra_requirements(extra: str, *only: str, distribution: str = "backorigin") -> tuple[str, ...]:
    """The requirements of ``distribution[extra]``, as its metadata writes them.

    Adapters declare their packages with it, so version ranges are written once, in the
    distribution's ``pyproject.toml``.

    Args:
        extra: The extra's name.
        only: Keep only these projects (``"google-auth"``); default: all of them.
        distribution: The distribution that defines the extra.

    Raises:
        LookupError: the extra is not defined, or lacks a project of ``only``.
    """
    found = package_requirements(distribution)[1].get(extra)
    if found is None:
        raise LookupError(f"{distribution} defines no extra {extra!r}")
    if not only:
        return found
    wanted = {_project_name(name) for name in only}
    kept = tuple(r for r in found if _project_name(r) in wanted)
    if len(kept) != len(wanted):
        raise LookupError(f"{distribution}[{extra}] does not require all of {', '.join(only)}")
    return kept


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
    def get_once(self, key: str, options: GetOptions) -> RawGet:
        """The read primitive: send one GET for ``options.range`` of ``key``, pinned.

        Implement this, and only this, to read: :meth:`get` (resume, window and pin checks)
        and every convenience is built on it. An implementation

        * sends the range as its protocol can (``options.range.header()`` for HTTP-like
          protocols) and the pin as a precondition where the protocol has one (an ETag in
          ``If-Match`` from :meth:`GetOptions.etag_condition`, a generation, a version id);
        * raises :mod:`backorigin.errors` exceptions, mapping statuses with
          :func:`backorigin.adapters.read.status_error`;
        * returns the open body, the object's metadata from the answer's own headers (an
          :class:`ObjectInfo` equal to what :meth:`head` says) and the window the answer
          states (``Content-Range``), or None for a whole body.

        It does not retry a dropped body, check the pin against the answer or cut the window:
        the shared read path does that for every adapter.

        Raises:
            ObjectNotFound, PreconditionFailed, InvalidRange, PermissionDenied,
            Unauthenticated, TransientOriginError, InvalidKey.
        """

    def get(
        self,
        key: str,
        options: GetOptions | None = None,
        *,
        attempts: int = RESUME_ATTEMPTS,
    ) -> GetResult:
        """Read ``key`` (or ``options.range`` of it), pinned to ``options.pin``; not overridden.

        Failures the origin reports up front (not found, changed version, unsatisfiable
        range) are raised by this call itself. The result's body resumes from its first
        missing byte, pinned to the version the first answer described, when it fails
        transiently or ends early; see :class:`~backorigin.adapters.read.GetResult`.

        Args:
            key: The origin-side key (before the adapter's prefix).
            options: Range, pin and conditions (default: the whole object, unpinned).
            attempts: Failed requests or dropped bodies tolerated before giving up.

        Raises:
            ObjectNotFound, PreconditionFailed, InvalidRange, PermissionDenied,
            Unauthenticated, TransientOriginError (also while reading).
        """
        options = options if options is not None else GetOptions()
        range = options.range
        what = f"GET {key!r}{f' ({range})' if range else ''} at origin {self.name!r}"
        return open_get(
            functools.partial(self.get_once, key),
            options,
            what,
            attempts=attempts,
            chunk_size=getattr(self, "chunk_size", _CHUNK_SIZE),
        )

    def read(
        self,
        key: str,
        range: ByteRange | None = None,
        version: str | ObjectInfo | None = None,
    ) -> GetResult:
        """Compatibility: :meth:`get` with a range and a pin given as arguments.

        Args:
            key: The origin-side key.
            range: Which bytes; the end is clamped at EOF.
            version: The :class:`ObjectInfo` to pin to, or only its version token (then the
                answer is checked against the token, see :attr:`GetOptions.version`).

        Unlike :meth:`get`, the result does not resume a dropped body (it raises
        :class:`TransientOriginError` at once), as the callers of this older form resume
        themselves.
        """
        if isinstance(version, str):
            options = GetOptions(range=range, version=version)
        else:
            options = GetOptions(range=range, pin=version)
        return self.get(key, options, attempts=1)

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

    @classmethod
    def environment_endpoint(
        cls, config: OriginConfig, environ: Mapping[str, str]
    ) -> tuple[str, str] | None:
        """The endpoint an environment variable names for ``config``, if its SDK follows one.

        Local commands (``serve``, ``fetch``, ``prewarm``, ...) put this into the origin's
        ``endpoint_url`` when the config has none, so the data plane and the edge plane
        reach the same place (an emulator, typically). Deployments never read it: what
        CloudFront is sent to comes from the config alone.

        Args:
            config: The origin's config.
            environ: The environment to read, e.g. ``os.environ``.

        Returns:
            The variable's name and the endpoint URL, or None. The default is None.
        """
        return None

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

    @classmethod
    def edge_recipe(cls, config: ConfigT) -> Mapping[str, Any] | None:
        """How the edge function can sign this origin's requests without the adapter.

        Bundling writes the recipe into the edge plan; the edge function applies it with the
        standard library (:mod:`backorigin.handlers.edge_signing`), so a miss for this origin
        loads neither pydantic, the config models, this adapter nor its SDK. The recipe is
        plain JSON data of one of the :data:`EDGE_SIGNING_KINDS`, with secrets given as
        references (:func:`secret_reference`), never values. It must produce exactly what
        :meth:`sign` produces for the same request and clock; the edge takes the adapter's
        path when there is no recipe. Like :meth:`deployment`, a class method: no secret is
        resolved and no SDK is needed to answer.

        Args:
            config: The origin's validated config.

        Returns:
            The recipe, or None (the default): the edge signs through :meth:`sign`.
        """
        del config
        return None

    # --- deployment face --------------------------------------------------------------------

    @classmethod
    def deployment(cls, config: ConfigT, role: FunctionRole) -> DeploymentNeeds:
        """What reading this origin needs in the ``role`` function, beyond the core.

        Bundling installs the packages into that function's bundle (for the Lambda platform)
        and the CDK construct grants the statements to its role. The edge function gets
        them only for origins CloudFront reaches through it; the fetcher reads every origin.
        The packages of the adapter's own distribution (its ``dependencies``) are bundled
        for both functions anyway; declare here what only one role or one auth mode needs.

        A class method on purpose: it must work without the adapter's SDK installed and
        without resolving any secret, at synth time.

        Args:
            config: The origin's validated config (its auth mode, bucket, …).
            role: ``edge`` (the Lambda@Edge function) or ``fetcher``.

        Returns:
            The default: nothing beyond the core.
        """
        del config, role
        return DeploymentNeeds()

    # --- conveniences built on the contract ------------------------------------------------

    def read_bytes(
        self, key: str, range: ByteRange | None = None, version: str | ObjectInfo | None = None
    ) -> bytes:
        """The whole object (or range) in memory; for small objects and tests."""
        with self.read(key, range=range, version=version) as result:
            return result.readall()

    def __enter__(self) -> OriginAdapter[ConfigT]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
