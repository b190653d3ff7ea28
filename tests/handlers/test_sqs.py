"""The edge's own SQS client, against moto's SQS server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from backorigin.handlers.sqs import SqsClient, SqsError

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def queue(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    sqs = boto3.client("sqs", region_name="eu-west-1", endpoint_url=moto_server)
    url = sqs.create_queue(QueueName=f"copy-{id(monkeypatch)}")["QueueUrl"]
    return SimpleNamespace(sqs=sqs, url=url)


def received(queue: SimpleNamespace) -> list[str]:
    answer = queue.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10)
    return [m["Body"] for m in answer.get("Messages", [])]


def test_messages_reach_the_queue(queue: SimpleNamespace) -> None:
    client = SqsClient("eu-west-1", environ=CREDENTIALS)
    bodies = [json.dumps({"key": "images/cat photo.jpg"}), json.dumps({"key": "caf\u00e9"})]
    answers = [client.send_message(QueueUrl=queue.url, MessageBody=body) for body in bodies]
    assert all(answer["MessageId"] for answer in answers)
    assert received(queue) == bodies


def test_an_unknown_queue_is_a_clear_error(queue: SimpleNamespace) -> None:
    client = SqsClient("eu-west-1", environ=CREDENTIALS)
    with pytest.raises(SqsError, match="QueueDoesNotExist"):
        client.send_message(QueueUrl=queue.url + "-gone", MessageBody="{}")


def test_no_credentials_no_request() -> None:
    calls: list[str] = []

    def transport(*args: Any) -> tuple[int, bytes]:
        calls.append(args[1])
        return 200, b"{}"

    client = SqsClient("eu-west-1", environ={}, transport=transport)
    with pytest.raises(SqsError, match="AWS_ACCESS_KEY_ID"):
        client.send_message(QueueUrl="https://sqs.eu-west-1.amazonaws.com/1/q", MessageBody="{}")
    assert calls == []


def test_an_unreachable_endpoint_fails_after_the_retries() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = SqsClient("eu-west-1", environ=CREDENTIALS, timeout=1.0)
    with pytest.raises(SqsError, match="could not be reached"):
        client.send_message(QueueUrl=f"http://127.0.0.1:{port}/1/q", MessageBody="{}")


def test_throttling_is_retried_and_the_region_comes_from_the_url() -> None:
    seen: list[Mapping[str, str]] = []
    answers = [
        (400, b'{"__type": "com.amazonaws.sqs#RequestThrottled", "message": "slow down"}'),
        (200, b'{"MessageId": "m-1", "MD5OfMessageBody": "99914b932bd37a50b983c5e7c90ae93b"}'),
    ]

    def transport(
        method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> tuple[int, bytes]:
        seen.append(headers)
        return answers[len(seen) - 1]

    client = SqsClient(None, environ=CREDENTIALS, transport=transport)
    answer = client.send_message(
        QueueUrl="https://sqs.ap-south-2.amazonaws.com/123456789012/q", MessageBody="{}"
    )
    assert answer["MessageId"] == "m-1"
    assert len(seen) == 2
    assert "/ap-south-2/sqs/aws4_request" in seen[1]["authorization"]
    assert seen[1]["x-amz-target"] == "AmazonSQS.SendMessage"


def test_a_corrupted_body_is_detected() -> None:
    client = SqsClient(
        "eu-west-1",
        environ=CREDENTIALS,
        transport=lambda *_: (200, b'{"MessageId": "m", "MD5OfMessageBody": "00"}'),
    )
    with pytest.raises(SqsError, match="MD5"):
        client.send_message(QueueUrl="http://127.0.0.1:1/1/q", MessageBody="{}")
