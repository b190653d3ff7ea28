"""What CloudFront itself does around a Lambda@Edge origin trigger, as plain functions.

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
    "LOCAL_EDGE_ID",
    "add_origin_request_headers",
    "via_value",
]

import copy
from typing import Any

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
