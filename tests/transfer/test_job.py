"""The copy job: one definition written by the edge and prewarm, read by the fetcher."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from backorigin.transfer import CopyJob as Exported
from backorigin.transfer.job import CopyJob, MalformedJob, queue_region


def test_a_copy_job_is_the_key_alone() -> None:
    body = CopyJob("images/a b.jpg").to_json()
    assert json.loads(body) == {"key": "images/a b.jpg"}
    assert CopyJob.from_json(body) == CopyJob("images/a b.jpg")


def test_a_refresh_names_the_etag_to_replace() -> None:
    job = CopyJob("k", replace='"0123abcd"')
    assert json.loads(job.to_json()) == {"key": "k", "replace": '"0123abcd"'}
    assert CopyJob.from_json(job.to_json().encode()) == job
    assert CopyJob.from_json(job.to_json()).replace == '"0123abcd"'


def test_fields_of_a_newer_sender_are_ignored() -> None:
    assert CopyJob.from_json('{"key": "k", "priority": 3}') == CopyJob("k")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "not JSON"),
        ("not json", "not JSON"),
        ("{" * 5000, "not JSON"),
        ("[" * 100_000, "not JSON"),
        ("[]", "must be a JSON object, not an array"),
        ("null", "must be a JSON object, not null"),
        ("42", "must be a JSON object, not a number"),
        ('"k"', "must be a JSON object, not a string"),
        ("{}", 'has no "key"'),
        ('{"keys": ["a"]}', 'has no "key"'),
        ('{"key": 5}', "key must be a string, not a number"),
        ('{"key": null}', "key must be a string, not null"),
        ('{"key": ["a"]}', "key must be a string, not an array"),
        ('{"key": "k", "replace": 7}', "replace must be a string, not a number"),
        (None, "must be JSON text, not null"),
        (123, "must be JSON text, not a number"),
    ],
)
def test_malformed_bodies_are_refused_with_the_reason(body: object, message: str) -> None:
    with pytest.raises(MalformedJob, match=message) as info:
        CopyJob.from_json(body)
    assert isinstance(info.value, ValueError)  # callers may catch it as a bad value


def test_the_package_exports_the_same_class() -> None:
    assert Exported is CopyJob


def test_building_a_job_loads_neither_the_engine_nor_an_sdk() -> None:
    """The edge builds jobs on its miss path, whose cold start is budgeted."""
    code = (
        "import sys, json\n"
        "from backorigin.transfer.job import CopyJob\n"
        "CopyJob.from_json(CopyJob('k', 'e').to_json())\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    heavy = ("boto3", "botocore", "awscrt", "pydantic", "yaml", "typing")
    assert [m for m in loaded if m.split(".")[0] in heavy] == []
    assert "backorigin.transfer.engine" not in loaded
    assert "backorigin.config" not in loaded


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/copies", "eu-west-1"),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/copies", "cn-north-1"),
        ("https://us-east-2.queue.amazonaws.com/123456789012/copies", "us-east-2"),
        ("https://SQS.AP-SOUTHEAST-2.AMAZONAWS.COM/1/q", "ap-southeast-2"),
        ("http://127.0.0.1:9324/000000000000/copies", None),
        ("http://localhost:5000/123456789012/copies", None),
        ("https://sqs.amazonaws.com/123456789012/copies", None),
        ("https://vpce-1a2b.sqs.eu-west-1.vpce.amazonaws.com/1/q", None),
        ("not a url", None),
    ],
)
def test_a_queue_url_names_its_region(url: str, region: str | None) -> None:
    """The edge's sender and prewarm's client sign for the region the URL names."""
    assert queue_region(url) == region
