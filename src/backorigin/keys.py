"""Object keys: CloudFront URI ↔ S3 key, validation, routing and rewrites.

Every key that reaches an origin has passed :func:`validate_key`; the edge function, the copy
engine and the CLI all use :func:`decode_uri` / :class:`Router` so a key is judged the same way
everywhere. This module imports no SDK: the edge function's hot path depends on it.
"""

from __future__ import annotations

__all__ = [
    "MAX_KEY_BYTES",
    "RESERVED_PREFIX",
    "Route",
    "RouteRule",
    "Router",
    "Target",
    "bucket_key",
    "decode_uri",
    "encode_key",
    "is_reserved",
    "route_key",
    "validate_key",
]

import re
from dataclasses import dataclass
from urllib.parse import quote

from backorigin import RESERVED_PREFIX as RESERVED_PREFIX  # re-exported
from backorigin.errors import InvalidKey, ObjectNotFound

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the lean path
if TYPE_CHECKING:
    # Types only: the edge function's lean path routes keys without loading the models.
    from collections.abc import Sequence

    from backorigin.config.models import Config

MAX_KEY_BYTES = 1024
"""S3's limit on the UTF-8 length of a key."""


_PERCENT_RE = re.compile(rb"%([0-9A-Fa-f]{2})")
# C0 controls, DEL and C1 controls: invisible, break logs and some stores refuse them.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# quote() keeps letters, digits and "_.-~"; of the rest only "/" stays literal.
_URI_SAFE = "/"


def validate_key(key: str) -> str:
    """Return ``key`` if it is acceptable as an object key, else raise :class:`InvalidKey`.

    Rejected: empty keys; keys over 1024 UTF-8 bytes; NUL and other control characters;
    backslashes; ``.`` and ``..`` path segments; text that is not valid Unicode.
    """
    if not key:
        raise InvalidKey("the key is empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey("the key is not valid UTF-8 text") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"the key is {size} bytes long; the limit is {MAX_KEY_BYTES}")
    if "\x00" in key:
        raise InvalidKey("the key contains a NUL character")
    control = _CONTROL_RE.search(key)
    if control:
        raise InvalidKey(f"the key contains the control character U+{ord(control.group()):04X}")
    if "\\" in key:
        raise InvalidKey("the key contains a backslash")
    if any(segment in (".", "..") for segment in key.split("/")):
        raise InvalidKey("the key contains a '.' or '..' path segment")
    return key


def is_reserved(key: str) -> bool:
    """Whether ``key`` lies under the copy engine's :data:`RESERVED_PREFIX`."""
    return key.startswith(RESERVED_PREFIX)


def decode_uri(uri: str) -> str:
    """The object key a CloudFront request URI names.

    The leading ``/`` is removed, percent-escapes are decoded strictly (``+`` stays a
    literal plus, as in a path), the bytes must be UTF-8, and the key must pass
    :func:`validate_key` and must not be reserved.

    Raises:
        InvalidKey: with the reason.
    """
    if not uri.startswith("/"):
        raise InvalidKey("the URI does not start with '/'")
    try:
        raw = uri[1:].encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey("the URI is not valid UTF-8 text") from None
    if raw.count(b"%") != len(_PERCENT_RE.findall(raw)):
        raise InvalidKey("the URI has an invalid percent-escape")
    decoded = _PERCENT_RE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)
    try:
        key = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKey("the URI does not decode to UTF-8") from None
    validate_key(key)
    if is_reserved(key):
        raise InvalidKey(f"keys under {RESERVED_PREFIX!r} are reserved")
    return key


def encode_key(key: str) -> str:
    """The request URI for ``key`` (the inverse of :func:`decode_uri`)."""
    return "/" + quote(key, safe=_URI_SAFE)


@dataclass(frozen=True, slots=True)
class Target:
    """One origin to try for a key, and the key to ask that origin for."""

    origin: str
    key: str


@dataclass(frozen=True, slots=True)
class Route:
    """Where a key is served from: the primary target first, then the fallbacks in order."""

    key: str
    targets: tuple[Target, ...]

    @property
    def primary(self) -> Target:
        """The origin the edge sends the request to."""
        return self.targets[0]


class RouteRule:
    """One route as plain values: which keys it takes, where it sends them, how it rewrites.

    The one place routes match and rewrite keys: :class:`Router` builds these from the
    config's routes and the edge plan from its JSON, so both route every key alike without
    the edge loading the config models.

    Args:
        prefix: A key must start with this.
        suffix: A key must end with one of these (any key if empty).
        origins: The route's origin, then its fallbacks in order.
        strip_prefix: Removed from the key when it starts so.
        add_prefix: Prepended after ``strip_prefix``.
    """

    __slots__ = ("add_prefix", "origins", "prefix", "strip_prefix", "suffix")

    def __init__(
        self,
        *,
        prefix: str,
        suffix: tuple[str, ...],
        origins: tuple[str, ...],
        strip_prefix: str,
        add_prefix: str,
    ) -> None:
        self.prefix = prefix
        self.suffix = suffix
        self.origins = origins
        self.strip_prefix = strip_prefix
        self.add_prefix = add_prefix

    def matches(self, key: str) -> bool:
        """Whether ``key`` falls under this route."""
        if not key.startswith(self.prefix):
            return False
        return not self.suffix or any(key.endswith(s) for s in self.suffix)

    def rewrite(self, key: str) -> str:
        """The key to ask this route's origins for.

        Raises:
            InvalidKey: the rewritten key is not acceptable.
        """
        rewritten = key
        if self.strip_prefix and rewritten.startswith(self.strip_prefix):
            rewritten = rewritten[len(self.strip_prefix) :]
        rewritten = self.add_prefix + rewritten
        try:
            return validate_key(rewritten)
        except InvalidKey as exc:
            raise InvalidKey(f"after the route's rewrite, {exc.reason}") from None


def route_key(key: str, rules: Sequence[RouteRule], default_origin: str) -> Route:
    """Resolve ``key`` to its ordered origins and origin-side key: first match wins; without
    rules, ``default_origin`` serves every key unchanged.

    Raises:
        InvalidKey: the key, or the key a rewrite makes of it, is not acceptable.
        ObjectNotFound: rules exist and none matches.
    """
    validate_key(key)
    if not rules:
        return Route(key, (Target(default_origin, key),))
    for rule in rules:
        if rule.matches(key):
            origin_key = rule.rewrite(key)
            return Route(key, tuple(Target(name, origin_key) for name in rule.origins))
    raise ObjectNotFound(f"no route matches key {key!r}")


class Router:
    """Applies a config's routes: first match wins; without routes, the first origin.

    A key that matches no route (when routes exist) is not served by any origin: routing it
    raises :class:`ObjectNotFound`, which the edge answers with a 404.
    """

    def __init__(self, config: Config) -> None:
        self._rules = [
            RouteRule(
                prefix=route.prefix,
                suffix=tuple(route.suffix),
                origins=(route.origin, *route.fallback),
                strip_prefix=route.rewrite.strip_prefix,
                add_prefix=route.rewrite.add_prefix,
            )
            for route in config.routes
        ]
        self._default = config.default_origin

    def route(self, key: str) -> Route:
        """Resolve ``key`` to its ordered origins and origin-side key (see :func:`route_key`).

        Raises:
            InvalidKey: the key, or the key a rewrite makes of it, is not acceptable.
            ObjectNotFound: routes exist and none matches.
        """
        return route_key(key, self._rules, self._default)


def bucket_key(config: Config, key: str) -> str:
    """The S3 key under which ``key`` is stored (the bucket prefix applied)."""
    return config.bucket.prefix + key
