"""HTTP origins at the edge, in every auth mode, sent as CloudFront sends them: the request the
edge function returned, plus X-Amz-Cf-Id, Via, X-Forwarded-For and User-Agent, to a real
local origin that checks the credentials."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cloudfront_support import VIEWER_IP, cloudfront_fetch

from backorigin.testing.http_origin import HttpOriginServer
from backorigin.types import OriginRequest

MODES: dict[str, dict[str, Any]] = {
    "none": {"mode": "none"},
    "basic": {"mode": "basic", "username": "alice", "password": {"secret": {"env": "P"}}},
    "bearer": {"mode": "bearer", "token": {"secret": {"env": "T"}}},
    "headers": {"mode": "headers", "headers": {"X-Api-Key": {"secret": {"env": "K"}}}},
}
SECRETS = {"P": "pa55-edge", "T": "t0ken-edge", "K": "k3y-edge"}


def expected(mode: str) -> dict[str, str]:
    if mode == "basic":
        return {"authorization": "Basic " + base64.b64encode(b"alice:pa55-edge").decode()}
    if mode == "bearer":
        return {"authorization": "Bearer t0ken-edge"}
    if mode == "headers":
        return {"x-api-key": "k3y-edge"}
    return {}


@pytest.mark.parametrize("mode", MODES)
def test_a_signed_edge_request_is_served_through_cloudfront(
    origin_server: HttpOriginServer, make_http_adapter: Any, ns: str, mode: str
) -> None:
    key = ns + "edge/a b.txt"
    origin_server.put(key, b"edge bytes")
    if expected(mode):
        origin_server.require_headers(key, expected(mode))
    adapter = make_http_adapter(auth=MODES[mode], environ=SECRETS)
    viewer = {"range": "bytes=0-3", "authorization": "viewer's own"}
    request = OriginRequest("GET", adapter.origin_uri(key), headers=viewer)
    signed = adapter.sign(request)
    response = cloudfront_fetch(adapter.cloudfront_origin(), signed)
    assert response.status == 206, response.data
    assert response.data == b"edge"
    (received,) = origin_server.requests(key)
    assert received.headers["x-amz-cf-id"]
    assert received.headers["x-forwarded-for"].endswith(VIEWER_IP)
    for name, value in expected(mode).items():
        assert received.headers[name] == value
    if mode in ("none", "headers"):  # nothing of ours replaces it; CloudFront forwards it
        assert received.headers.get("authorization") == "viewer's own"


@pytest.mark.parametrize("mode", ["basic", "bearer", "headers"])
def test_without_the_credentials_the_origin_refuses(
    origin_server: HttpOriginServer, make_http_adapter: Any, ns: str, mode: str
) -> None:
    key = ns + "private"
    origin_server.put(key, b"private")
    origin_server.require_headers(key, expected(mode))
    adapter = make_http_adapter(auth=MODES[mode], environ=SECRETS)
    unsigned = OriginRequest("GET", adapter.origin_uri(key))
    assert cloudfront_fetch(adapter.cloudfront_origin(), unsigned).status in (401, 403)
