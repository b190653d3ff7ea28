"""Sending a signed origin request the way CloudFront does after the origin-request trigger."""

from __future__ import annotations

import urllib3

from backorigin.local.cloudfront import add_origin_request_headers
from backorigin.types import OriginRequest, OriginSpec

VIEWER_IP = "203.0.113.10"
"""The viewer address CloudFront appends to X-Forwarded-For in the edge tests."""


def as_cloudfront_sends(
    request: OriginRequest, *, request_id: str = "cf-test-request-id=="
) -> dict[str, str]:
    """The headers of a signed origin request once CloudFront has added its own.

    CloudFront adds ``X-Amz-Cf-Id``, ``Via``, ``X-Forwarded-For`` and ``User-Agent`` *after*
    the origin-request trigger returned (:func:`backorigin.local.cloudfront.
    add_origin_request_headers`), so a signature made in the trigger never covers them.
    """
    cf_request = {
        "method": request.method,
        "uri": request.uri,
        "querystring": request.querystring,
        "headers": {
            name: [{"key": name, "value": value}] for name, value in request.headers.items()
        },
    }
    sent = add_origin_request_headers(cf_request, request_id=request_id, client_ip=VIEWER_IP)
    return {entries[0]["key"]: entries[0]["value"] for entries in sent["headers"].values()}


def cloudfront_fetch(spec: OriginSpec, request: OriginRequest) -> urllib3.BaseHTTPResponse:
    """Send a signed origin request to ``spec`` as CloudFront would, its headers added."""
    query = f"?{request.querystring}" if request.querystring else ""
    url = f"{spec.protocol}://{spec.domain}:{spec.port}{spec.path}{request.uri}{query}"
    headers = as_cloudfront_sends(request)
    assert headers["X-Amz-Cf-Id"]  # what the signature could not cover is really there
    return urllib3.request(request.method, url, headers=headers, retries=False, redirect=False)
