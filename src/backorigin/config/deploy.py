"""What a valid config still gets wrong for CloudFront: problems found only once deployed.

A config that loads is right for the copy path and for ``backorigin serve`` (whose origins are
often on ``127.0.0.1``), but CloudFront refuses some settings at run time, when the edge function
sends it to an origin: it answers the viewer 502. :func:`deployability_problems` finds them
before deploy, for every origin CloudFront reaches through the edge function (the routes'
origins, or the first origin without routes; a route's ``fallback`` origins are read only by
the fetcher, so CloudFront never connects to them). The CDK construct calls it at synth and
``backorigin validate`` reports it.

Sources (Amazon CloudFront Developer Guide):

* "Lambda@Edge event structure", origin-request ``origin.custom``
  (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/lambda-event-structure.html):
  the domain name "can't include a colon (:), and can't be an IP address", at most 253
  characters; the port "must be 80, 443, or a number in the range of 1024-65535".
* "Restrictions on edge functions", HTTP headers
  (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/edge-functions-restrictions.html):
  the disallowed headers a function can't add, and the headers read-only in origin-request
  events; adding either fails CloudFront's validation with a 502.
"""

from __future__ import annotations

__all__ = [
    "CLOUDFRONT_DISALLOWED_HEADERS",
    "CLOUDFRONT_DISALLOWED_PREFIXES",
    "CLOUDFRONT_ORIGIN_PORTS",
    "CLOUDFRONT_READ_ONLY_ORIGIN_REQUEST_HEADERS",
    "Problem",
    "deployability_problems",
    "edge_origin_roles",
]

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from backorigin.config.models import Config
from backorigin.config.origins import HttpHeadersAuth, OriginConfig

CLOUDFRONT_DISALLOWED_HEADERS = frozenset(
    {
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "trailer",
        "upgrade",
        "x-accel-buffering",
        "x-accel-charset",
        "x-accel-limit-rate",
        "x-accel-redirect",
        "x-amzn-auth",
        "x-amzn-cf-billing",
        "x-amzn-cf-id",
        "x-amzn-cf-xff",
        "x-amzn-errortype",
        "x-amzn-fle-profile",
        "x-amzn-header-count",
        "x-amzn-header-order",
        "x-amzn-lambda-integration-tag",
        "x-amzn-requestid",
        "x-cache",
        "x-forwarded-proto",
        "x-real-ip",
    }
)
"""Headers an edge function can't add (lower case); CloudFront answers 502 if it does."""
CLOUDFRONT_DISALLOWED_PREFIXES = ("x-amz-cf-", "x-edge-")
"""Prefixes of disallowed headers (``X-Amz-Cf-*``, ``X-Edge-*``)."""
CLOUDFRONT_READ_ONLY_ORIGIN_REQUEST_HEADERS = frozenset(
    {
        "accept-encoding",
        "content-length",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "transfer-encoding",
        "via",
    }
)
"""Headers an origin-request function can read but not add or change (lower case)."""
CLOUDFRONT_ORIGIN_PORTS = "80, 443 or 1024-65535"
"""The ports a custom origin may use, as CloudFront's guide states them."""
_MAX_DOMAIN = 253


@dataclass(frozen=True, slots=True)
class Problem:
    """One setting CloudFront would refuse at run time.

    Attributes:
        path: Where it is, e.g. ``origins[1].base_url``.
        message: What CloudFront refuses and what to do instead.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def edge_origin_roles(config: Config) -> dict[str, str]:
    """The origins CloudFront reaches through the edge function, each with why.

    Routes' origins (a route's ``fallback`` origins are read by the fetcher only), or the
    first origin when there are no routes.

    Returns:
        Origin name -> role, e.g. ``{"old": "the origin of routes[0]"}``.
    """
    return config.edge_origin_roles()


def _port_allowed(port: int) -> bool:
    return port in (80, 443) or 1024 <= port <= 65535


def _header_problem(name: str) -> str | None:
    lowered = name.lower()
    if lowered in CLOUDFRONT_DISALLOWED_HEADERS or lowered.startswith(
        CLOUDFRONT_DISALLOWED_PREFIXES
    ):
        return (
            f"not deployable: CloudFront does not let an edge function add the header "
            f"{name!r} (a disallowed header), and answers 502 when one does; send the value "
            "under another header name"
        )
    if lowered in CLOUDFRONT_READ_ONLY_ORIGIN_REQUEST_HEADERS:
        return (
            f"not deployable: {name!r} is read-only in origin-request events, so CloudFront "
            "answers 502 when the edge function sets it; send the value under another header "
            "name"
        )
    return None


def _url_problems(path: str, url: str) -> list[Problem]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    problems: list[Problem] = []
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith(".localhost"):
            problems.append(
                Problem(
                    path,
                    f"not deployable: CloudFront cannot reach {host!r}, a name for the "
                    "machine itself; give the origin's public DNS name",
                )
            )
        elif len(host) > _MAX_DOMAIN:
            problems.append(
                Problem(
                    path,
                    f"not deployable: a CloudFront origin's domain name is at most "
                    f"{_MAX_DOMAIN} characters",
                )
            )
    else:
        problems.append(
            Problem(
                path,
                f"not deployable: CloudFront connects to an origin by domain name, and an "
                f"origin's domain name can't be an IP address ({host}); give it a DNS name",
            )
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return problems  # an invalid port is refused when the config is loaded
    if not _port_allowed(port):
        problems.append(
            Problem(
                path,
                f"not deployable: CloudFront connects to custom origins on ports "
                f"{CLOUDFRONT_ORIGIN_PORTS} only, not {port}",
            )
        )
    return problems


def _origin_problems(index: int, origin: OriginConfig) -> list[Problem]:
    problems: list[Problem] = []
    for field, url in origin.cloudfront_urls().items():
        problems += _url_problems(f"origins[{index}].{field}", url)
    auth = getattr(origin, "auth", None)
    if isinstance(auth, HttpHeadersAuth):
        for name in auth.headers:
            message = _header_problem(name)
            if message is not None:
                problems.append(Problem(f"origins[{index}].auth.headers.{name}", message))
    return problems


def deployability_problems(config: Config) -> list[Problem]:
    """Settings of ``config`` that CloudFront would refuse once deployed.

    Only origins CloudFront reaches through the edge function are checked (see
    :func:`edge_origin_roles`): their host must be a DNS name (not an IP literal or
    ``localhost``), their port 80, 443 or 1024-65535, and the header names of ``headers``
    auth neither disallowed nor read-only for an origin-request function. Loading a config
    never checks these, so ``serve`` and tests keep working with origins on ``127.0.0.1``.

    Args:
        config: A loaded config.

    Returns:
        The problems in origin order; empty when CloudFront would accept everything.
    """
    roles = edge_origin_roles(config)
    problems: list[Problem] = []
    for index, origin in enumerate(config.origins):
        if origin.name in roles:
            problems += _origin_problems(index, origin)
    return problems
