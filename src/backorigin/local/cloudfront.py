"""What CloudFront itself does around a Lambda@Edge origin trigger, as plain functions.

Two halves: the headers CloudFront adds to an origin request after the origin-request
trigger ran (:func:`add_origin_request_headers`), and the checks it applies to a trigger's
result before using it (:func:`check_origin_request`, :func:`check_origin_response`); a
result that breaks one is answered with a 502, and each :class:`Violation` names the rule and
the AWS page that states it. The rules themselves, with their sources, are
:mod:`backorigin.cloudfront_rules`, which config validation and the edge function read too.

Standard library only, so tests and tools can send a request exactly as CloudFront would
without loading the local server (aiohttp) or an AWS SDK.

Source: Amazon CloudFront Developer Guide, "Request and response behavior for custom origins"
(https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/RequestAndResponseBehaviorCustomOrigin.html)
and "Lambda@Edge event structure"
(https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/lambda-event-structure.html).
"""

from __future__ import annotations

__all__ = [
    "CLOUDFRONT_USER_AGENT",
    "DISALLOWED_HEADERS",
    "LOCAL_EDGE_ID",
    "READ_ONLY_ORIGIN_REQUEST",
    "READ_ONLY_ORIGIN_RESPONSE",
    "Violation",
    "add_origin_request_headers",
    "check_origin_request",
    "check_origin_response",
    "is_disallowed",
    "is_ip_literal",
    "is_loopback",
    "via_value",
]

import base64
import binascii
import copy
from dataclasses import dataclass
from typing import Any

from backorigin.cloudfront_rules import (
    CUSTOM_HEADER_DENYLIST,
    CUSTOM_HEADER_PREFIXES,
    CUSTOM_HEADERS,
    DISALLOWED_HEADERS,
    EVENT_STRUCTURE,
    GENERATED,
    MAX_CUSTOM_ORIGIN_DOMAIN,
    MAX_S3_ORIGIN_DOMAIN,
    ORIGIN_EVENT_RESPONSE_LIMIT,
    ORIGIN_PORTS,
    QUOTAS,
    READ_ONLY_ORIGIN_REQUEST,
    READ_ONLY_ORIGIN_RESPONSE,
    RESTRICTIONS,
    UPDATED,
    URI_LIMIT,
    is_disallowed,
    is_ip_literal,
    is_loopback,
    port_allowed,
)

CLOUDFRONT_USER_AGENT = "Amazon CloudFront"
"""The ``User-Agent`` CloudFront sends to an origin when the cache key does not include it."""

LOCAL_EDGE_ID = "6c6f63616c2d6261636b6f726967696e"
"""The hex label of the local edge server in ``Via`` (CloudFront's are 32 hex digits too)."""


def via_value(edge_id: str = LOCAL_EDGE_ID) -> str:
    """The ``Via`` hop CloudFront adds: ``1.1 <edge_id>.cloudfront.net (CloudFront)``.

    Args:
        edge_id: The edge server's label.

    Returns:
        The header value.
    """
    return f"1.1 {edge_id}.cloudfront.net (CloudFront)"


def _set(headers: dict[str, list[dict[str, str]]], key: str, value: str) -> None:
    headers[key.lower()] = [{"key": key, "value": value}]


def add_origin_request_headers(
    request: dict[str, Any],
    *,
    request_id: str,
    client_ip: str,
    edge_id: str = LOCAL_EDGE_ID,
) -> dict[str, Any]:
    """Return an origin-request result with the headers CloudFront sends the origin.

    An origin-request trigger's result is not what reaches the origin: CloudFront adds
    ``X-Amz-Cf-Id`` (the request's id, the event's ``config.requestId``) after the function
    runs, so a function can neither see nor sign it; it sends ``User-Agent: Amazon
    CloudFront`` in place of the viewer's; it adds its ``Via`` hop; and it appends the
    viewer's address to ``X-Forwarded-For``. The function sees the last three in its event
    already (CloudFront's own example event shows them), so each is added only where the
    result lacks it: applying this twice, or to a result that kept the event's headers,
    gives the same request.

    Args:
        request: The ``Records[0].cf.request`` object an origin-request trigger returned
            (a request, not a generated response). It is not modified.
        request_id: The event's ``config.requestId``; CloudFront sends it as ``X-Amz-Cf-Id``.
        client_ip: The viewer's address (the event's ``clientIp``).
        edge_id: The edge server's label in ``Via``.

    Returns:
        A copy of ``request`` whose ``headers`` (CloudFront's lower-case-keyed lists of
        ``{"key", "value"}``) carry the headers above.
    """
    result = copy.deepcopy(request)
    headers: dict[str, list[dict[str, str]]] = result.setdefault("headers", {})
    _set(headers, "X-Amz-Cf-Id", request_id)
    _set(headers, "User-Agent", CLOUDFRONT_USER_AGENT)
    hop = via_value(edge_id)
    via = [
        part.strip()
        for entry in headers.get("via", [])
        for part in entry["value"].split(",")
        if part.strip()
    ]
    if hop not in via:
        _set(headers, "Via", ", ".join([*via, hop]))
    forwarded = ",".join(entry["value"] for entry in headers.get("x-forwarded-for", []))
    addresses = [part.strip() for part in forwarded.split(",") if part.strip()]
    if not addresses or addresses[-1] != client_ip:
        _set(headers, "X-Forwarded-For", ",".join([*addresses, client_ip]))
    return result


# --- the checks CloudFront applies to a Lambda@Edge result ----------------------------------


@dataclass(frozen=True, slots=True)
class Violation:
    """One rule of CloudFront's that a function result breaks.

    Attributes:
        rule: A short name for the rule, e.g. ``read-only-header``.
        detail: What the result did.
        source: The AWS page that states the rule (title and URL).
    """

    rule: str
    detail: str
    source: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.detail} — {self.source}"


def _values(headers: Any) -> dict[str, list[str]]:
    if not isinstance(headers, dict):
        return {}
    return {
        str(name).lower(): [str(entry.get("value")) for entry in entries if isinstance(entry, dict)]
        for name, entries in headers.items()
        if isinstance(entries, list)
    }


def _header_checks(
    before: Any, after: Any, read_only: frozenset[str], trigger: str
) -> list[Violation]:
    old, new = _values(before), _values(after)
    found: list[Violation] = []
    for name in sorted(new.keys() - old.keys()):
        if is_disallowed(name):
            found.append(
                Violation("disallowed-header", f"the {trigger} result adds {name}", RESTRICTIONS)
            )
    for name in sorted(read_only):
        if old.get(name) != new.get(name):
            verb = "adds" if name not in old else "removes" if name not in new else "changes"
            found.append(
                Violation(
                    "read-only-header",
                    f"the {trigger} result {verb} read-only {name}",
                    RESTRICTIONS,
                )
            )
    return found


def _status_check(result: dict[str, Any], trigger: str, source: str) -> list[Violation]:
    try:
        status = int(result.get("status", 0))
    except (TypeError, ValueError):
        status = 0
    if 200 <= status <= 599:
        return []
    return [
        Violation("status", f"the {trigger} result has status {result.get('status')!r}", source)
    ]


def _body_checks(result: dict[str, Any], trigger: str, source: str) -> list[Violation]:
    found: list[Violation] = []
    body = result.get("body")
    if body is None:
        return found
    encoding = result.get("bodyEncoding", "text")
    if encoding not in ("text", "base64"):
        found.append(Violation("body-encoding", f"bodyEncoding {encoding!r}", GENERATED))
    elif encoding == "base64":
        try:
            base64.b64decode(str(body), validate=True)
        except (binascii.Error, ValueError):
            found.append(Violation("body-encoding", "the body is not valid base64", GENERATED))
    size = len(str(body).encode()) + sum(
        len(name) + len(value)
        for name, values in _values(result.get("headers")).items()
        for value in values
    )
    if size > ORIGIN_EVENT_RESPONSE_LIMIT:
        found.append(
            Violation(
                "generated-size",
                f"the {trigger} result generates {size} bytes of headers and body, over "
                f"{ORIGIN_EVENT_RESPONSE_LIMIT}",
                QUOTAS,
            )
        )
    return found


def _origin_checks(origin: Any, headers: Any, *, strict_origins: bool) -> list[Violation]:
    if (
        not isinstance(origin, dict)
        or len(origin) != 1
        or next(iter(origin))
        not in (
            "custom",
            "s3",
        )
    ):
        return [
            Violation("origin", "origin must hold exactly one custom or s3 origin", EVENT_STRUCTURE)
        ]
    kind, spec = next(iter(origin.items()))
    if not isinstance(spec, dict):
        return [Violation("origin", f"origin.{kind} is not an object", EVENT_STRUCTURE)]
    found: list[Violation] = []
    domain = str(spec.get("domainName") or "")
    if kind == "custom":
        if not domain or ":" in domain or len(domain) > MAX_CUSTOM_ORIGIN_DOMAIN:
            found.append(
                Violation(
                    "origin-domain",
                    f"custom origin domainName {domain!r}: empty, longer than "
                    f"{MAX_CUSTOM_ORIGIN_DOMAIN} characters or with a colon",
                    EVENT_STRUCTURE,
                )
            )
        elif is_ip_literal(domain) and (strict_origins or not is_loopback(domain)):
            found.append(
                Violation(
                    "origin-domain",
                    f"custom origin domainName {domain!r} is an IP address, not a DNS name",
                    EVENT_STRUCTURE,
                )
            )
        port = spec.get("port")
        if not isinstance(port, int) or not port_allowed(port):
            found.append(
                Violation(
                    "origin-port",
                    f"custom origin port {port!r} is not {ORIGIN_PORTS}",
                    EVENT_STRUCTURE,
                )
            )
        if spec.get("protocol") not in ("http", "https"):
            found.append(
                Violation(
                    "origin-protocol",
                    f"custom origin protocol {spec.get('protocol')!r} is not http or https",
                    EVENT_STRUCTURE,
                )
            )
        for field_name, low in (("readTimeout", 4), ("keepaliveTimeout", 1)):
            value = spec.get(field_name)
            if value is not None and (not isinstance(value, int) or not low <= value <= 60):
                found.append(
                    Violation(
                        "origin-timeout",
                        f"custom origin {field_name} {value!r} is not {low}-60",
                        EVENT_STRUCTURE,
                    )
                )
    elif not domain or len(domain) > MAX_S3_ORIGIN_DOMAIN or domain != domain.lower():
        found.append(
            Violation(
                "origin-domain",
                f"S3 origin domainName {domain!r}: empty, longer than {MAX_S3_ORIGIN_DOMAIN} "
                "characters or not lower case",
                EVENT_STRUCTURE,
            )
        )
    request_headers = _values(headers)
    for name in sorted(_values(spec.get("customHeaders"))):
        if (
            name in CUSTOM_HEADER_DENYLIST
            or name.startswith(CUSTOM_HEADER_PREFIXES)
            or is_disallowed(name)
        ):
            found.append(Violation("custom-header", f"origin custom header {name}", CUSTOM_HEADERS))
        elif name in request_headers:
            found.append(
                Violation(
                    "custom-header",
                    f"origin custom header {name} is also a request header",
                    EVENT_STRUCTURE,
                )
            )
    return found


def _uri_checks(result: dict[str, Any]) -> list[Violation]:
    found: list[Violation] = []
    uri = result.get("uri")
    query = str(result.get("querystring") or "")
    if not isinstance(uri, str) or not uri.startswith("/"):
        found.append(Violation("uri", f"uri {uri!r} does not begin with /", EVENT_STRUCTURE))
        uri = str(uri)
    if len(uri) + (len(query) + 1 if query else 0) >= URI_LIMIT:
        found.append(
            Violation(
                "uri", f"the URI with its query string is {URI_LIMIT}+ characters", RESTRICTIONS
            )
        )
    if any(ch in query for ch in " #") or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in query):
        found.append(
            Violation(
                "querystring",
                "the query string holds a space, a control character or #",
                RESTRICTIONS,
            )
        )
    return found


def check_origin_request(
    event_request: dict[str, Any], result: Any, *, strict_origins: bool = True
) -> list[Violation]:
    """The rules an origin-request trigger's result breaks (empty: CloudFront accepts it).

    Args:
        event_request: The ``request`` of the event the function was given (unmodified).
        result: What the function returned: the request to send, or a generated response
            (it has a ``status``).
        strict_origins: Refuse every IP-literal origin domain, as CloudFront does. With
            False, loopback addresses and ``localhost`` pass, so local origins can be served.

    Returns:
        The violations found, in a stable order.
    """
    if not isinstance(result, dict):
        return [Violation("result", "the origin-request result is not an object", EVENT_STRUCTURE)]
    if "status" in result:  # a generated response: the origin is never contacted
        return [
            *_status_check(result, "origin-request", GENERATED),
            *_header_checks({}, result.get("headers"), frozenset(), "origin-request"),
            *_body_checks(result, "origin-request", GENERATED),
        ]
    return [
        *_header_checks(
            event_request.get("headers"),
            result.get("headers"),
            READ_ONLY_ORIGIN_REQUEST,
            "origin-request",
        ),
        *_origin_checks(result.get("origin"), result.get("headers"), strict_origins=strict_origins),
        *_uri_checks(result),
    ]


def check_origin_response(event_response: dict[str, Any], result: Any) -> list[Violation]:
    """The rules an origin-response trigger's result breaks (empty: CloudFront accepts it).

    Args:
        event_response: The ``response`` of the event the function was given (unmodified).
        result: The response the function returned.

    Returns:
        The violations found, in a stable order.
    """
    if not isinstance(result, dict):
        return [Violation("result", "the origin-response result is not an object", EVENT_STRUCTURE)]
    return [
        *_status_check(result, "origin-response", UPDATED),
        *_header_checks(
            event_response.get("headers"),
            result.get("headers"),
            READ_ONLY_ORIGIN_RESPONSE,
            "origin-response",
        ),
        *_body_checks(result, "origin-response", UPDATED),
    ]
