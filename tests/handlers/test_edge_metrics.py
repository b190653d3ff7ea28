"""The edge function's CloudWatch EMF lines, from real invocations on CloudFront's event shapes.

The format is CloudWatch's embedded metric format specification: a JSON object whose
``_aws`` member holds a millisecond ``Timestamp`` and ``CloudWatchMetrics`` directives, each
with a ``Namespace``, ``Dimensions`` (lists of member names) and ``Metrics`` (names and
units), and whose root members carry the dimension values and the metric values.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from backorigin.config import load_config
from backorigin.handlers import make_edge_handler
from backorigin.handlers.edge import EDGE_METRICS, KEY_HEADER, METRICS_NAMESPACE

EVENTS = Path(__file__).resolve().parent.parent / "events"
REGION = "eu-west-1"
CONTEXT = SimpleNamespace(
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:edge:7"
)
CONFIG = load_config(f"""\
bucket: {{name: media-new, region: {REGION}}}
origins:
  - {{name: web, type: http, base_url: "https://old.example.com/static/"}}
""")
UNITS = {"Count", "Bytes", "Seconds", "Milliseconds", "None"}


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return loaded


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        client = boto3.client("sqs", region_name=REGION)
        queue = client.create_queue(QueueName="backorigin-copy")["QueueUrl"]
        yield SimpleNamespace(client=client, queue=queue)


def emf_lines(text: str) -> list[dict[str, Any]]:
    """Every printed line, each checked against the EMF specification."""
    documents = []
    for line in text.splitlines():
        document = json.loads(line)
        meta = document["_aws"]
        assert isinstance(meta["Timestamp"], int)
        # Milliseconds since the epoch, not seconds: CloudWatch drops points far in the past.
        assert meta["Timestamp"] > 1_000_000_000_000
        directives = meta["CloudWatchMetrics"]
        assert isinstance(directives, list)
        assert directives
        for directive in directives:
            assert isinstance(directive["Namespace"], str)
            assert directive["Namespace"]
            for dimension_set in directive["Dimensions"]:
                assert 1 <= len(dimension_set) <= 30
                for dimension in dimension_set:
                    assert isinstance(document[dimension], str)
            assert 1 <= len(directive["Metrics"]) <= 100
            for metric in directive["Metrics"]:
                assert metric.get("Unit", "None") in UNITS
                value = document[metric["Name"]]
                assert isinstance(value, int | float)
                assert not isinstance(value, bool)
        documents.append(document)
    return documents


def metrics_of(document: dict[str, Any]) -> dict[str, float]:
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == METRICS_NAMESPACE
    assert directive["Dimensions"] == [["service"]]
    assert document["service"] == "backorigin-edge"
    return {metric["Name"]: document[metric["Name"]] for metric in directive["Metrics"]}


def test_an_origin_response_counts_served_from_origin_and_the_copy_enqueued(
    sqs: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = make_edge_handler(CONFIG, queue_url=sqs.queue, sqs_client=sqs.client, metrics=print)
    handler(event("origin-response-secondary-200"), CONTEXT)
    (document,) = emf_lines(capsys.readouterr().out)
    assert metrics_of(document) == {"ServedFromOrigin": 1, "CopiesEnqueued": 1}
    assert abs(document["_aws"]["Timestamp"] / 1000 - time.time()) < 3600
    received = sqs.client.receive_message(QueueUrl=sqs.queue).get("Messages", [])
    assert len(received) == 1  # the count matches what the queue holds


def test_a_job_that_cannot_be_sent_counts_as_an_enqueue_failure(
    sqs: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = sqs.queue.rsplit("/", 1)[0] + "/no-such-queue"
    handler = make_edge_handler(CONFIG, queue_url=missing, sqs_client=sqs.client, metrics=print)
    handler(event("origin-response-secondary-200"), CONTEXT)
    (document,) = emf_lines(capsys.readouterr().out)
    assert metrics_of(document) == {"ServedFromOrigin": 1, "EnqueueFailures": 1}


def test_a_refused_key_is_counted(capsys: pytest.CaptureFixture[str]) -> None:
    handler = make_edge_handler(CONFIG, queue_url="https://sqs.invalid/q", metrics=print)
    request = event("origin-request-secondary")
    request["Records"][0]["cf"]["request"]["uri"] = "/images/../secret"
    response = handler(request, CONTEXT)
    assert response["status"] == "400"
    (document,) = emf_lines(capsys.readouterr().out)
    assert metrics_of(document) == {"RefusedKeys": 1}
    assert set(metrics_of(document)) <= set(EDGE_METRICS)


def test_a_routed_request_and_the_primary_print_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = make_edge_handler(CONFIG, queue_url="https://sqs.invalid/q", metrics=print)
    routed = handler(event("origin-request-secondary"), CONTEXT)
    assert KEY_HEADER in routed["headers"]
    handler(copy.deepcopy(event("origin-request-primary")), CONTEXT)
    handler(event("origin-response-primary-200"), CONTEXT)
    assert capsys.readouterr().out == ""
