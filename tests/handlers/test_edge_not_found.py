"""A 404 from the routed origin starts a copy job only where a fallback origin may have it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from backorigin.config import load_config
from backorigin.handlers import make_edge_handler
from backorigin.handlers.edge import NOT_FOUND_BURST, NOT_FOUND_JOBS_PER_SECOND, EdgeHandler

EVENTS = Path(__file__).resolve().parent.parent / "events"
CONFIG = load_config("""\
bucket: {name: media-new, region: eu-west-1}
origins:
  - {name: web, type: http, base_url: 'https://old.example.com/'}
  - {name: archive, type: http, base_url: 'https://archive.example.com/'}
routes:
  - {prefix: solo/, origin: web}
  - {prefix: '', origin: web, fallback: [archive]}
edge: {negative_ttl: 20s}
""")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        queue = sqs.create_queue(QueueName="copy")["QueueUrl"]
        clock = Clock()
        handler = make_edge_handler(CONFIG, queue_url=queue, sqs_client=sqs, clock=clock)
        yield SimpleNamespace(sqs=sqs, queue=queue, clock=clock, handler=handler)


def not_found(handler: EdgeHandler, key: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "origin-response-secondary-404.json").read_text())
    cf = event["Records"][0]["cf"]
    cf["request"]["headers"]["x-backorigin-key"] = [{"key": "X-Backorigin-Key", "value": key}]
    response: dict[str, Any] = handler(event, None)
    return response


def queued(world: SimpleNamespace) -> list[str]:
    keys: list[str] = []
    while True:
        got = world.sqs.receive_message(QueueUrl=world.queue, MaxNumberOfMessages=10)
        messages = got.get("Messages", [])
        if not messages:
            return sorted(keys)
        keys += [json.loads(m["Body"])["key"] for m in messages]
        for m in messages:
            world.sqs.delete_message(QueueUrl=world.queue, ReceiptHandle=m["ReceiptHandle"])


def test_a_404_on_a_route_with_fallbacks_enqueues_once(world: SimpleNamespace) -> None:
    for _ in range(3):
        response = not_found(world.handler, "reports/2019.pdf")
        assert response["status"] == "404"
        assert response["headers"]["cache-control"][0]["value"] == "max-age=20"
    assert queued(world) == ["reports/2019.pdf"]


def test_a_404_on_a_route_without_fallbacks_enqueues_nothing(world: SimpleNamespace) -> None:
    for n in range(20):
        not_found(world.handler, f"solo/{n}.txt")
    assert queued(world) == []


def test_random_404s_are_rationed(world: SimpleNamespace) -> None:
    burst = int(NOT_FOUND_BURST)
    for n in range(burst + 30):
        assert not_found(world.handler, f"scan/{n}")["status"] == "404"
    assert len(queued(world)) == burst
    # The budget refills with time; a key refused earlier may try again.
    world.clock.now += 1.0
    refill = int(NOT_FOUND_JOBS_PER_SECOND)
    for n in range(burst, burst + refill + 1):
        not_found(world.handler, f"scan/{n}")
    assert queued(world) == sorted(f"scan/{n}" for n in range(burst, burst + refill))
