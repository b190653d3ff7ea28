"""The configuration document: bucket, origins, routes, copy and edge settings."""

from __future__ import annotations

__all__ = [
    "BucketConfig",
    "Config",
    "CopyConfig",
    "EdgeConfig",
    "RewriteConfig",
    "RouteConfig",
    "origin_types",
]

import re
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from backorigin.config.origins import (
    BUILTIN_ORIGINS,
    HttpUrl,
    KeyPrefix,
    OriginConfig,
    Strict,
    bare_bucket_name,
)
from backorigin.config.units import ByteSize, Duration
from backorigin.plugins import adapter_plugins

# S3 limits: parts of 5 MiB to 5 GiB, at most 10,000 of them, objects up to 5 TiB.
MIN_PART_SIZE = 5 * 1024**2
MAX_PART_SIZE = 5 * 1024**3
MAX_OBJECT_SIZE = 5 * 1024**4
# The statuses CloudFront accepts as origin-group failover criteria.
FAILOVER_STATUSES = frozenset({400, 403, 404, 416, 500, 502, 503, 504})

_BUCKET_RE = re.compile(r"^(?!xn--)(?!sthree-)(?!.*-s3alias$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")


def origin_types() -> dict[str, type[OriginConfig]]:
    """Every known origin type and its config model: built-ins plus registered adapters.

    Built-in models are used directly so validating a config never imports an adapter; a
    third-party type's model is its adapter class's ``config_model``.
    """
    types = dict(BUILTIN_ORIGINS)
    for name in adapter_plugins.names():
        if name not in types:
            model = getattr(adapter_plugins.load(name), "config_model", None)
            if isinstance(model, type) and issubclass(model, OriginConfig):
                types[name] = model
    return types


def _dispatch_origin(value: Any) -> Any:
    """Validate one ``origins`` entry against the model its ``type`` selects."""
    if isinstance(value, OriginConfig) or not isinstance(value, dict):
        return value
    types = origin_types()
    kind = value.get("type")
    if kind not in types:
        valid = ", ".join(sorted(types))
        loc: tuple[str, ...] = ("type",)
        if kind is None:
            error = PydanticCustomError(
                "origin_type_missing", "required; one of: {valid}", {"valid": valid}
            )
        else:
            error = PydanticCustomError(
                "origin_type_unknown",
                "unknown origin type '{kind}'; valid types: {valid}",
                {"kind": str(kind), "valid": valid},
            )
        raise ValidationError.from_exception_data(
            "OriginConfig",
            [InitErrorDetails(type=error, loc=loc, input=kind)],
            hide_input=True,
        )
    return types[str(kind)].model_validate(value)


# SerializeAsAny: dump each origin with its own type's fields, not just the base class's.
AnyOrigin = Annotated[SerializeAsAny[OriginConfig], BeforeValidator(_dispatch_origin)]


class BucketConfig(Strict):
    """The S3 bucket in front of the origins."""

    name: str | None = Field(
        default=None,
        description="Bucket name. Optional for the CDK construct (it can create one).",
    )
    region: str | None = Field(default=None, description="AWS region of the bucket.")
    endpoint_url: HttpUrl | None = Field(
        default=None, description="Any S3-compatible endpoint instead of AWS."
    )
    prefix: KeyPrefix = Field(default="", description="Key prefix inside the bucket.")

    @field_validator("name", mode="before")
    @classmethod
    def _bare_name(cls, value: object) -> object:
        return bare_bucket_name(value, "s3")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and (not _BUCKET_RE.match(value) or ".." in value):
            raise ValueError(
                "not a valid S3 bucket name (3-63 lower-case letters, digits, '.' and '-')"
            )
        return value

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str | None) -> str | None:
        if value is not None and not _REGION_RE.match(value):
            raise ValueError(f"{value!r} does not look like an AWS region (e.g. eu-west-1)")
        return value


class RewriteConfig(Strict):
    """How a route turns the request key into the origin-side key."""

    strip_prefix: str = Field(default="", description="Removed from the key when it starts so.")
    add_prefix: KeyPrefix = Field(default="", description="Prepended after strip_prefix.")


class RouteConfig(Strict):
    """Sends matching keys to an origin. Routes are tried in order; the first match wins."""

    prefix: str = Field(default="", description="The key must start with this.")
    suffix: list[str] = Field(
        default_factory=list, description="The key must end with one of these (any if empty)."
    )
    origin: str = Field(description="Name of the origin to read from.")
    fallback: list[str] = Field(
        default_factory=list,
        description="Origins the copy path tries next, in order, when the origin says not found.",
    )
    rewrite: RewriteConfig = Field(default_factory=RewriteConfig)

    @field_validator("suffix", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class CopyConfig(Strict):
    """How objects are copied into S3."""

    part_size: ByteSize = Field(
        default=8 * 1024**2,
        ge=MIN_PART_SIZE,
        le=MAX_PART_SIZE,
        description="Multipart part size (5MiB..5GiB); grows for objects needing >10,000 parts.",
    )
    concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description=(
            "Parts read and uploaded at once; memory is about (concurrency + 2) x part_size."
        ),
    )
    max_object_size: ByteSize = Field(
        default=MAX_OBJECT_SIZE,
        ge=0,
        le=MAX_OBJECT_SIZE,
        description="Larger objects are not copied (outcome too_large).",
    )
    lease_ttl: Duration = Field(
        default=60.0,
        ge=1,
        le=900,
        description=(
            "How long a copy's single-flight lease lasts without renewal; a crashed copier "
            "blocks others (and its copy resumes) after at most this long."
        ),
    )


class EdgeConfig(Strict):
    """Behaviour of the CloudFront distribution and the edge function."""

    failover_status: list[int] = Field(
        default_factory=lambda: [403, 404],
        min_length=1,
        description="S3 statuses on which CloudFront fails over to the legacy origin.",
    )
    negative_ttl: Duration = Field(
        default=30.0, ge=0, le=31536000, description="How long CloudFront caches an origin 404."
    )
    forward_query: list[str] = Field(
        default_factory=list,
        description="Query parameters passed on to the legacy origin (all others are dropped).",
    )

    @field_validator("failover_status")
    @classmethod
    def _check_statuses(cls, value: list[int]) -> list[int]:
        bad = sorted(set(value) - FAILOVER_STATUSES)
        if bad:
            allowed = ", ".join(str(s) for s in sorted(FAILOVER_STATUSES))
            raise ValueError(f"CloudFront cannot fail over on {bad}; allowed: {allowed}")
        return sorted(set(value))


class Config(Strict):
    """A whole backorigin configuration. Load one with :func:`backorigin.config.load_config`."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, populate_by_name=True
    )

    bucket: BucketConfig = Field(description="The S3 bucket in front of the origins.")
    origins: list[AnyOrigin] = Field(min_length=1, description="The old stores, at least one.")
    routes: list[RouteConfig] = Field(
        default_factory=list,
        description="First match wins; without routes every key goes to the first origin.",
    )
    transfer: CopyConfig = Field(default_factory=CopyConfig, alias="copy")
    edge: EdgeConfig = Field(default_factory=EdgeConfig)

    @field_validator("origins")
    @classmethod
    def _unique_names(cls, value: list[OriginConfig]) -> list[OriginConfig]:
        seen: dict[str, int] = {}
        errors: list[InitErrorDetails] = []
        for index, origin in enumerate(value):
            if origin.name in seen:
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "duplicate_origin",
                            "origin name '{name}' is already used by origins[{first}]",
                            {"name": origin.name, "first": seen[origin.name]},
                        ),
                        loc=(index, "name"),
                        input=origin.name,
                    )
                )
            seen.setdefault(origin.name, index)
        if errors:
            raise ValidationError.from_exception_data("Config", errors, hide_input=True)
        return value

    @field_validator("routes")
    @classmethod
    def _known_origins(cls, value: list[RouteConfig], info: ValidationInfo) -> list[RouteConfig]:
        origins: list[OriginConfig] | None = info.data.get("origins")
        if origins is None:  # origins were invalid; their errors are reported already
            return value
        names = [o.name for o in origins]
        known = ", ".join(names)
        errors: list[InitErrorDetails] = []

        def unknown(loc: tuple[int | str, ...], name: str) -> None:
            errors.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "unknown_origin",
                        "no origin is named '{name}'; origins: {known}",
                        {"name": name, "known": known},
                    ),
                    loc=loc,
                    input=name,
                )
            )

        for index, route in enumerate(value):
            if route.origin not in names:
                unknown((index, "origin"), route.origin)
            for position, name in enumerate(route.fallback):
                if name not in names:
                    unknown((index, "fallback", position), name)
                elif name == route.origin or route.fallback.index(name) != position:
                    errors.append(
                        InitErrorDetails(
                            type=PydanticCustomError(
                                "duplicate_fallback",
                                "origin '{name}' appears twice in this route",
                                {"name": name},
                            ),
                            loc=(index, "fallback", position),
                            input=name,
                        )
                    )
        if errors:
            raise ValidationError.from_exception_data("Config", errors, hide_input=True)
        return value

    def edge_origin_roles(self) -> dict[str, str]:
        """The origins CloudFront reaches through the edge function, each with why.

        The routes' origins, or the first origin when there are no routes. A route's
        ``fallback`` origins are read by the fetcher only: CloudFront never connects to them.

        Returns:
            Origin name -> role, e.g. ``{"old": "the origin of routes[0]"}``.
        """
        if not self.routes:
            return {self.default_origin: "the default origin (there are no routes)"}
        roles: dict[str, str] = {}
        for index, route in enumerate(self.routes):
            roles.setdefault(route.origin, f"the origin of routes[{index}]")
        return roles

    @model_validator(mode="after")
    def _edge_origins_can_be_signed(self) -> Config:
        """Origins CloudFront is sent to must work at the edge; fallbacks only copy."""
        users = self.edge_origin_roles()
        errors: list[InitErrorDetails] = []
        for index, origin in enumerate(self.origins):
            problem = origin.edge_problem() if origin.name in users else None
            if problem is not None:
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "edge_unsupported",
                            "origin '{name}' is {role}, so CloudFront requests reach it "
                            "through the edge function, but {problem}",
                            {"name": origin.name, "role": users[origin.name], "problem": problem},
                        ),
                        loc=("origins", index, "auth"),
                        input=None,
                    )
                )
        if errors:
            raise ValidationError.from_exception_data("Config", errors, hide_input=True)
        return self

    @property
    def default_origin(self) -> str:
        """The origin a request goes to before the routes are applied.

        The first route's origin; without routes, the first origin, which then serves every
        key. CloudFront's origin group points its secondary at this origin (the edge function
        re-points each request to its route's origin), ``backorigin serve`` does the same, and
        the router, the edge plan and prewarm's listing send unrouted keys here when there are
        no routes. Every part of backorigin asks this property rather than deciding itself.
        """
        return self.routes[0].origin if self.routes else self.origins[0].name

    def origin(self, name: str) -> OriginConfig:
        """The origin called ``name``.

        Raises:
            KeyError: there is none.
        """
        for origin in self.origins:
            if origin.name == name:
                return origin
        raise KeyError(name)
