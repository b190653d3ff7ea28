"""CloudFront's checks on function results, against CloudFront's own event shapes.

The events in tests/events follow the guide's examples ("Lambda@Edge event structure"); a
function that returns them unchanged breaks no rule, and the real edge function's results on
them break none either, even with IP-literal origins refused as CloudFront refuses them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from backorigin.config import load_config
from backorigin.handlers.edge import make_edge_handler
from backorigin.local.cloudfront import (
    check_origin_request,
    check_origin_response,
    is_disallowed,
    is_ip_literal,
    is_loopback,
)

EVENTS = Path(__file__).resolve().parent.parent / "events"


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def cf(event: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = event["Records"][0]["cf"]
    return record


@pytest.mark.parametrize("name", sorted(p.name for p in EVENTS.glob("origin-*.json")))
def test_an_unchanged_event_breaks_no_rule(name: str) -> None:
    given = cf(load(name))
    if given["config"]["eventType"] == "origin-request":
        problems = check_origin_request(given["request"], copy.deepcopy(given["request"]))
    else:
        problems = check_origin_response(given["response"], copy.deepcopy(given["response"]))
    assert problems == []


def test_the_edge_functions_results_break_no_rule() -> None:
    config = load_config(
        "bucket: {name: migrated}\n"
        "origins:\n  - {name: old, type: http, base_url: 'https://old.example.com/static/'}\n"
    )
    edge = make_edge_handler(config, queue_url="local://unused", sqs_client=object())
    event = load("origin-request-secondary.json")
    given = copy.deepcopy(cf(event))
    result = edge(event, None)
    assert result["origin"]["custom"]["domainName"] == "old.example.com"
    assert check_origin_request(given["request"], result, strict_origins=True) == []
    primary = load("origin-request-primary.json")
    given = copy.deepcopy(cf(primary))
    assert check_origin_request(given["request"], edge(primary, None)) == []


def test_a_result_that_is_not_an_object_is_refused() -> None:
    given = cf(load("origin-request-secondary.json"))
    (problem,) = check_origin_request(given["request"], None)
    assert problem.rule == "result"
    assert "lambda-event-structure" in problem.source


@pytest.mark.parametrize(
    ("check", "value", "expected"),
    [
        (is_disallowed, "X-Amz-Cf-Id", True),
        (is_disallowed, "x-edge-location", True),
        (is_disallowed, "X-Amzn-RequestId", True),
        (is_disallowed, "Keep-Alive", True),
        (is_disallowed, "X-Amz-Date", False),
        (is_disallowed, "Authorization", False),
        (is_ip_literal, "192.0.2.1", True),
        (is_ip_literal, "[2001:db8::1]", True),
        (is_ip_literal, "old.example.com", False),
        (is_loopback, "127.0.0.2", True),
        (is_loopback, "::1", True),
        (is_loopback, "localhost", True),
        (is_loopback, "192.0.2.1", False),
        (is_loopback, "example.com", False),
    ],
)
def test_header_and_address_classes(check: Any, value: str, expected: bool) -> None:
    assert check(value) is expected
