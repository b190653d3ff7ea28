"""The old origin's validators on S3 responses, on CloudFront's documented event shape."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from backorigin.config import load_config
from backorigin.handlers import lambda_entry, make_edge_handler
from backorigin.handlers.validators import ETAG_META, LAST_MODIFIED_META, http_date

EVENTS = Path(__file__).resolve().parent.parent / "events"
OLD_ETAG = '"0TGgMtyYKyngiOlAhr2Rkw=="'
OLD_DATE = "Tue, 01 Dec 2026 10:20:30 GMT"
CONFIG = load_config(
    "bucket: {name: media-new}\n"
    "origins: [{name: web, type: http, base_url: 'https://old.example.com/'}]\n"
)
HANDLER = make_edge_handler(CONFIG, queue_url="https://sqs.invalid/q", sqs_client=object())


def s3_answer(
    status: int = 200,
    *,
    provenance: bool = True,
    etag: str = OLD_ETAG,
    modified: str = "2026-12-01T10:20:30.123000+00:00",
    **asked: str,
) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "origin-response-primary-200.json").read_text())
    cf = event["Records"][0]["cf"]
    cf["response"]["status"] = str(status)
    headers = cf["response"]["headers"]
    headers["content-length"] = [{"key": "Content-Length", "value": "1000"}]
    headers["last-modified"] = [{"key": "Last-Modified", "value": "Wed, 02 Dec 2026 08:00:00 GMT"}]
    if provenance:
        headers[ETAG_META] = [{"key": "x-amz-meta-backorigin-origin-etag", "value": etag}]
        headers[LAST_MODIFIED_META] = [
            {"key": "x-amz-meta-backorigin-origin-last-modified", "value": modified}
        ]
    for name, value in asked.items():
        header = name.replace("_", "-")
        cf["request"]["headers"][header] = [{"key": header, "value": value}]
    return event


def run(event: dict[str, Any]) -> dict[str, Any]:
    """Both ways the edge function answers S3: the entry's fast path and the handler."""
    fast = lambda_entry.edge(copy.deepcopy(event), None)
    full = HANDLER(copy.deepcopy(event), None)
    assert fast == full
    return fast


def value(response: dict[str, Any], name: str) -> str | None:
    values = response["headers"].get(name)
    return values[0]["value"] if values else None


def test_the_old_validators_replace_s3s() -> None:
    response = run(s3_answer())
    assert response["status"] == "200"
    assert value(response, "etag") == OLD_ETAG
    assert value(response, "last-modified") == OLD_DATE
    assert value(response, "content-length") == "1000"
    assert "body" not in response  # S3's body goes on to the viewer


def test_without_provenance_nothing_changes() -> None:
    event = s3_answer(provenance=False, if_none_match='"abc"')
    assert run(event) == event["Records"][0]["cf"]["response"]


@pytest.mark.parametrize(
    "header",
    [OLD_ETAG, f"W/{OLD_ETAG}", f'"other", {OLD_ETAG}', "*"],
)
def test_a_matching_if_none_match_gets_a_304(header: str) -> None:
    response = run(s3_answer(if_none_match=header))
    assert (response["status"], response["body"]) == ("304", "")
    assert value(response, "etag") == OLD_ETAG
    assert value(response, "content-length") is None
    assert value(response, "content-type") is None


def test_a_206_becomes_a_304_too() -> None:
    assert run(s3_answer(206, if_none_match=OLD_ETAG))["status"] == "304"


@pytest.mark.parametrize(
    "since", [OLD_DATE, "Wed, 02 Dec 2026 00:00:00 GMT", "Tuesday, 01-Dec-26 10:20:30 GMT"]
)
def test_if_modified_since_at_or_after_the_old_date_gets_a_304(since: str) -> None:
    assert run(s3_answer(if_modified_since=since))["status"] == "304"


@pytest.mark.parametrize(
    "asked",
    [
        {"if_none_match": '"d131a032dc982b29e088e94086bd9193"'},  # S3's own, or any other
        {"if_modified_since": "Tue, 01 Dec 2026 10:20:29 GMT"},  # a second too early
        {"if_modified_since": "not a date"},
        # If-None-Match decides alone when present (RFC 9110 section 13.2.2).
        {"if_none_match": '"other"', "if_modified_since": OLD_DATE},
    ],
)
def test_anything_else_gets_the_object(asked: dict[str, str]) -> None:
    response = run(s3_answer(**asked))
    assert response["status"] == "200"
    assert "body" not in response
    assert value(response, "etag") == OLD_ETAG


def test_an_unquoted_etag_is_quoted_and_a_bad_date_is_left_out() -> None:
    response = run(s3_answer(etag="CKih16GjycICEAE=", modified="yesterday"))
    assert value(response, "etag") == '"CKih16GjycICEAE="'
    assert value(response, "last-modified") == "Wed, 02 Dec 2026 08:00:00 GMT"  # S3's own


def test_s3s_own_304_keeps_its_status() -> None:
    response = run(s3_answer(304, if_none_match='"abc"'))
    assert response["status"] == "304"
    assert "body" not in response


def test_http_date_is_the_imf_fixdate() -> None:
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(1764584430) == "Mon, 01 Dec 2025 10:20:30 GMT"
