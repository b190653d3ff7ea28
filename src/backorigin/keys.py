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
    "Router",
    "Target",
    "bucket_key",
    "decode_uri",
    "encode_key",
    "is_reserved",
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
    from backorigin.config.models import Config, RouteConfig

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


class Router:
    """Applies a config's routes: first match wins; without routes, the first origin.

    A key that matches no route (when routes exist) is not served by any origin: routing it
    raises :class:`ObjectNotFound`, which the edge answers with a 404.
    """

    def __init__(self, config: Config) -> None:
        self._routes: list[RouteConfig] = list(config.routes)
        self._default = config.default_origin

    def route(self, key: str) -> Route:
        """Resolve ``key`` to its ordered origins and origin-side key.

        Raises:
            InvalidKey: the key, or the key a rewrite makes of it, is not acceptable.
            ObjectNotFound: routes exist and none matches.
        """
        validate_key(key)
        if not self._routes:
            return Route(key, (Target(self._default, key),))
        for route in self._routes:
            if route.matches(key):
                origin_key = self._rewrite(route, key)
                names = (route.origin, *route.fallback)
                return Route(key, tuple(Target(name, origin_key) for name in names))
        raise ObjectNotFound(f"no route matches key {key!r}")

    @staticmethod
    def _rewrite(route: RouteConfig, key: str) -> str:
        rewrite = route.rewrite
        rewritten = key
        if rewrite.strip_prefix and rewritten.startswith(rewrite.strip_prefix):
            rewritten = rewritten[len(rewrite.strip_prefix) :]
        rewritten = rewrite.add_prefix + rewritten
        try:
            return validate_key(rewritten)
        except InvalidKey as exc:
            raise InvalidKey(f"after the route's rewrite, {exc.reason}") from None


def bucket_key(config: Config, key: str) -> str:
    """The S3 key under which ``key`` is stored (the bucket prefix applied)."""
    return config.bucket.prefix + key
