"""The closed error taxonomy of backorigin.

Every adapter translates its SDK's or protocol's failures into these classes in exactly one
function, so the copy engine, the handlers and the CLI only ever reason about this small set.
Always raise them ``from`` the original exception so the cause stays visible in tracebacks.
"""

from __future__ import annotations

__all__ = [
    "BackoriginError",
    "ConfigError",
    "ConfigIssue",
    "InvalidKey",
    "InvalidRange",
    "MissingExtra",
    "NotSupported",
    "ObjectNotFound",
    "OriginError",
    "PermissionDenied",
    "PreconditionFailed",
    "RegistryError",
    "TransientOriginError",
    "Unauthenticated",
]

from dataclasses import dataclass


class BackoriginError(Exception):
    """Base class of every error backorigin raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem found in a configuration.

    Attributes:
        path: Where the problem is, e.g. ``origins[1].auth.mode``; empty for the whole document.
        message: What is wrong, never including a secret value.
        line: The 1-based YAML line of the offending node, when the config came from YAML.
    """

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "<config>"
        at = f" (line {self.line})" if self.line is not None else ""
        return f"{where}{at}: {self.message}"


class ConfigError(BackoriginError, ValueError):
    """A configuration is invalid; ``issues`` lists every problem with its path."""

    def __init__(self, issues: list[ConfigIssue], source: str | None = None) -> None:
        self.issues = list(issues)
        self.source = source
        head = f"invalid configuration{f' in {source}' if source else ''}"
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"{head} ({len(self.issues)} problem(s)):\n{lines}")


class InvalidKey(BackoriginError, ValueError):
    """A request path or object key was rejected; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid key: {reason}")


class MissingExtra(BackoriginError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, extra: str, module: str) -> None:
        self.extra = extra
        self.module = module
        super().__init__(
            f"{module} is not installed; install it with: pip install 'backorigin[{extra}]'"
        )


class RegistryError(BackoriginError, LookupError):
    """An origin type is unknown, or was registered twice."""


class OriginError(BackoriginError):
    """Base class of failures reported by an origin adapter."""


class ObjectNotFound(OriginError, FileNotFoundError):
    """The object does not exist at the origin (or no route leads to one)."""


class PermissionDenied(OriginError, PermissionError):
    """The origin refused access with valid credentials (HTTP 403)."""


class Unauthenticated(OriginError, PermissionError):
    """The origin rejected or lacked credentials (HTTP 401)."""


class PreconditionFailed(OriginError):
    """The object changed since the version a read was pinned to (HTTP 412 or equivalent)."""


class InvalidRange(OriginError, ValueError):
    """A byte range starts at or beyond the end of the object (HTTP 416)."""


class NotSupported(OriginError, NotImplementedError):
    """The adapter cannot perform this operation (e.g. listing a plain HTTP server)."""


class TransientOriginError(OriginError):
    """A failure worth retrying later: 5xx, 429, timeouts, dropped connections.

    Attributes:
        retry_after: Seconds the origin asked us to wait, when it said so.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)
