"""The edge plan: what the edge function needs from the config, as plain JSON.

:func:`backorigin.bundling.edge_plan` writes it at bundle time from the validated config;
the edge function reads it with :mod:`json` alone. So a request to the S3 primary, and a miss
routed to an origin that is reached without signing or signed from its adapter's recipe
(``signing``, applied by :mod:`backorigin.handlers.edge_signing`), never load pydantic, YAML
or the config models. Other origins that sign (or whose adapter computes its own URIs) are
marked ``lean: false`` and go through their adapter, built from the full config on first use.

Routing is :func:`backorigin.keys.route_key` over the plan's routes, the same function
:class:`backorigin.keys.Router` applies to the config's; the tests check both on the same keys.
"""

from __future__ import annotations

__all__ = ["PLAN_FORMAT", "EdgePlan", "OriginPlan", "PlanError"]

from urllib.parse import quote

from backorigin.errors import BackoriginError
from backorigin.keys import Route, RouteRule, route_key, validate_key

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the lean path
if TYPE_CHECKING:
    from typing import Any

PLAN_FORMAT = 2
"""Version of the plan's layout; a bundle with another version is refused at cold start.

Version 2 added ``signing``: a ``lean`` origin may sign, so code reading version 1 would send
its requests unsigned."""


class PlanError(BackoriginError):
    """The edge plan is missing, of another format, or malformed."""


class OriginPlan:
    """How CloudFront reaches one origin, and whether the edge needs its adapter."""

    __slots__ = ("domain", "lean", "name", "path", "port", "prefix", "protocol", "signing")

    def __init__(self, name: str, raw: dict[str, Any]) -> None:
        self.name = name
        self.domain: str = raw["domain"]
        self.path: str = raw["path"]
        self.protocol: str = raw["protocol"]
        self.port: int = int(raw["port"])
        self.prefix: str = raw["prefix"]
        self.lean: bool = bool(raw["lean"])
        signing = raw.get("signing")
        if signing is not None and not isinstance(signing, dict):
            raise TypeError(f"signing of origin {name!r} is not an object")
        self.signing: dict[str, Any] | None = signing
        """The edge signing recipe of a ``lean`` origin that signs, else None."""

    def origin_uri(self, key: str) -> str:
        """The request URI for ``key`` below the origin path, as the adapter contract's
        default ``origin_uri`` makes it (only used when ``lean``)."""
        validate_key(key)
        return "/" + quote(validate_key(self.prefix + key), safe="/")


class EdgePlan:
    """The parsed plan. Build it with :meth:`from_json` or from the dict bundling writes.

    Raises:
        PlanError: the plan is of another format or misses a field.
    """

    def __init__(self, raw: dict[str, Any]) -> None:
        if not isinstance(raw, dict) or raw.get("format") != PLAN_FORMAT:
            found = raw.get("format") if isinstance(raw, dict) else None
            raise PlanError(f"edge plan format {found!r}; this code reads {PLAN_FORMAT}")
        try:
            self.origins = {name: OriginPlan(name, o) for name, o in raw["origins"].items()}
            self.default_origin: str = raw["default_origin"]
            self.routes = [
                RouteRule(
                    prefix=r["prefix"],
                    suffix=tuple(r["suffix"]),
                    origins=(r["origin"], *r["fallback"]),
                    strip_prefix=r["strip_prefix"],
                    add_prefix=r["add_prefix"],
                )
                for r in raw["routes"]
            ]
            self.negative_ttl = int(raw["negative_ttl"])
            self.forward_query = frozenset(raw["forward_query"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"malformed edge plan: {type(exc).__name__}: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> EdgePlan:
        """Parse a plan written by :func:`backorigin.bundling.edge_plan`."""
        import json  # already loaded in any Lambda runtime

        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise PlanError(f"the edge plan is not JSON: {exc}") from None
        return cls(raw)

    def route(self, key: str) -> Route:
        """Same contract as :meth:`backorigin.keys.Router.route` (both are
        :func:`backorigin.keys.route_key`)."""
        return route_key(key, self.routes, self.default_origin)
