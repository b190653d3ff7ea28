"""The headers CloudFront adds to an origin request after the origin-request trigger."""

from __future__ import annotations

import json
import subprocess
import sys

from backorigin.local.cloudfront import add_origin_request_headers, via_value


def result(**headers: str) -> dict[str, object]:
    return {
        "clientIp": "203.0.113.178",
        "method": "GET",
        "uri": "/a.txt",
        "querystring": "",
        "headers": {k.lower(): [{"key": k, "value": v}] for k, v in headers.items()},
    }


def values(request: dict[str, object]) -> dict[str, str]:
    headers = request["headers"]
    assert isinstance(headers, dict)
    return {name: entries[0]["value"] for name, entries in headers.items()}


def test_adds_what_cloudfront_adds_and_leaves_the_input_alone() -> None:
    before = result(Authorization="AWS4-HMAC-SHA256 x", **{"User-Agent": "curl/8"})
    after = add_origin_request_headers(before, request_id="abc==", client_ip="192.0.2.2")
    assert values(after) == {
        "authorization": "AWS4-HMAC-SHA256 x",
        "user-agent": "Amazon CloudFront",
        "x-amz-cf-id": "abc==",
        "via": via_value(),
        "x-forwarded-for": "192.0.2.2",
    }
    assert after["headers"]["x-amz-cf-id"][0]["key"] == "X-Amz-Cf-Id"  # type: ignore[index]
    assert values(before)["user-agent"] == "curl/8"


def test_appends_the_viewer_to_forwarded_for_and_via_once() -> None:
    before = result(**{"X-Forwarded-For": "192.0.2.4, 192.0.2.3", "Via": "1.1 proxy"})
    once = add_origin_request_headers(before, request_id="r", client_ip="192.0.2.2")
    assert values(once)["x-forwarded-for"] == "192.0.2.4,192.0.2.3,192.0.2.2"
    assert values(once)["via"] == f"1.1 proxy, {via_value()}"
    twice = add_origin_request_headers(once, request_id="r", client_ip="192.0.2.2")
    assert twice == once


def test_importing_it_loads_no_server_or_sdk() -> None:
    code = (
        "import sys, json; from backorigin.local import add_origin_request_headers;"
        "import backorigin.local.cloudfront; print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    heavy = {"aiohttp", "boto3", "botocore", "aws_lambda_powertools", "pydantic"}
    assert [m for m in json.loads(out) if m.split(".")[0] in heavy] == []
