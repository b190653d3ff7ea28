"""What a valid config still gets wrong for CloudFront: problems found only once deployed.

A config that loads is right for the copy path and for ``backorigin serve`` (whose origins are
often on ``127.0.0.1``), but CloudFront refuses some settings at run time, when the edge function
sends it to an origin: it answers the viewer 502. :func:`deployability_problems` finds them
before deploy, for every origin CloudFront reaches through the edge function (the routes'
origins, or the first origin without routes; a route's ``fallback`` origins are read only by
the fetcher, so CloudFront never connects to them). The CDK construct calls it at synth and
``backorigin validate`` reports it.

CloudFront's rules (an origin's domain name and port; the headers an edge function may not add
or change) and the pages that state them are :mod:`backorigin.cloudfront_rules`, which the edge
function and the local CloudFront stand-in read too.
"""

from __future__ import annotations

__all__ = [
    "Problem",
    "deployability_problems",
    "edge_origin_roles",
]

from dataclasses import dataclass
from urllib.parse import urlsplit

from backorigin.cloudfront_rules import (
    MAX_CUSTOM_ORIGIN_DOMAIN,
    ORIGIN_PORTS,
    READ_ONLY_ORIGIN_REQUEST,
    is_disallowed,
    is_ip_literal,
    port_allowed,
)
from backorigin.config.models import Config
from backorigin.config.origins import HttpHeadersAuth, OriginConfig


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


def _header_problem(name: str) -> str | None:
    if is_disallowed(name):
        return (
            f"not deployable: CloudFront does not let an edge function add the header "
            f"{name!r} (a disallowed header), and answers 502 when one does; send the value "
            "under another header name"
        )
    if name.lower() in READ_ONLY_ORIGIN_REQUEST:
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
    if is_ip_literal(host):
        problems.append(
            Problem(
                path,
                f"not deployable: CloudFront connects to an origin by domain name, and an "
                f"origin's domain name can't be an IP address ({host}); give it a DNS name",
            )
        )
    elif host == "localhost" or host.endswith(".localhost"):
        problems.append(
            Problem(
                path,
                f"not deployable: CloudFront cannot reach {host!r}, a name for the "
                "machine itself; give the origin's public DNS name",
            )
        )
    elif len(host) > MAX_CUSTOM_ORIGIN_DOMAIN:
        problems.append(
            Problem(
                path,
                f"not deployable: a CloudFront origin's domain name is at most "
                f"{MAX_CUSTOM_ORIGIN_DOMAIN} characters",
            )
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return problems  # an invalid port is refused when the config is loaded
    if not port_allowed(port):
        problems.append(
            Problem(
                path,
                f"not deployable: CloudFront connects to custom origins on ports "
                f"{ORIGIN_PORTS} only, not {port}",
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
