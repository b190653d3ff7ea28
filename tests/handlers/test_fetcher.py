"""The fetcher Lambda on SQS-shaped events, copying into SeaweedFS from a real HTTP origin."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from backorigin.config import load_config
from backorigin.handlers import make_fetcher_handler
from backorigin.testing.http_origin import HttpOriginServer

EVENTS = Path(__file__).resolve().parent.parent / "events"
pytestmark = pytest.mark.usefixtures("s3_env")


@pytest.fixture(scope="module")
def origin() -> Iterator[HttpOriginServer]:
    with HttpOriginServer() as server:
        yield server


@pytest.fixture
def log_stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def handler(
    bucket: str, seaweedfs: Any, s3_client: Any, origin: HttpOriginServer, log_stream: io.StringIO
) -> Any:
    config = load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        "origins:\n"
        f"  - {{name: web, type: http, base_url: '{origin.url}', retries: 1, backoff: 10ms}}\n"
        "copy: {max_object_size: 1MiB}\n"
    )
    logger = Logger(service="backorigin-fetcher-test", stream=log_stream)
    return make_fetcher_handler(config, s3_client=s3_client, logger=logger)


def sqs_event(*bodies: str) -> dict[str, Any]:
    template = json.loads((EVENTS / "sqs-copy-job.json").read_text())["Records"][0]
    records = []
    for index, body in enumerate(bodies):
        record = copy.deepcopy(template)
        record["messageId"] = f"message-{index}"
        record["body"] = body
        records.append(record)
    return {"Records": records}


def job(key: str) -> str:
    return json.dumps({"key": key})


class Context:
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:fetcher"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def test_a_batch_reports_only_retryable_failures(
    handler: Any,
    origin: HttpOriginServer,
    s3_client: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    log_stream: io.StringIO,
) -> None:
    origin.put("f/ok.txt", b"fine", headers={"Content-Type": "text/plain"})
    origin.put("f/broken.txt", b"x")
    origin.fail("f/broken.txt", times=100, status=500)
    origin.put("f/huge.bin", b"h" * (2 * 1024 * 1024))
    event = sqs_event(
        job("f/ok.txt"),
        job("f/missing.txt"),
        job("f/broken.txt"),
        job("f/huge.bin"),
        "not json",
        job("f/ok.txt"),
    )
    response = handler(event, Context())
    assert response == {"batchItemFailures": [{"itemIdentifier": "message-2"}]}
    stored = s3_client.get_object(Bucket=bucket, Key="f/ok.txt")
    assert stored["Body"].read() == b"fine"
    assert stored["ContentType"] == "text/plain"
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in listed] == ["f/ok.txt"]
    out = capsys.readouterr().out
    metrics = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    assert metrics, "EMF metrics are printed"
    emitted = metrics[-1]
    assert emitted["CopiesCopied"] == [1.0]
    assert emitted["CopiesExists"] == [1.0]
    assert emitted["CopiesNotFound"] == [1.0]
    assert emitted["CopiesTooLarge"] == [1.0]
    assert emitted["CopiesFailed"] == [1.0]
    assert emitted["BytesCopied"] == [4.0]
    assert emitted["MalformedJobs"] == [1.0]
    logs = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    failed = [entry for entry in logs if entry.get("outcome") == "failed"]
    assert failed[0]["key"] == "f/broken.txt"
    assert failed[0]["level"] == "WARNING"


def test_direct_invocation_with_keys(
    handler: Any, origin: HttpOriginServer, s3_client: Any, bucket: str
) -> None:
    origin.put("d/a.bin", b"a" * 10)
    result = handler({"keys": ["d/a.bin", "d/none.bin"]}, SimpleNamespace())
    outcomes = [(r["key"], r["outcome"]) for r in result["results"]]
    assert outcomes == [("d/a.bin", "copied"), ("d/none.bin", "not_found")]
    assert result["results"][0]["bytes"] == 10
    assert s3_client.get_object(Bucket=bucket, Key="d/a.bin")["Body"].read() == b"a" * 10


@pytest.mark.parametrize("bad", [{}, {"keys": "a"}, {"keys": [1]}])
def test_malformed_direct_invocations_are_refused(handler: Any, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="expected an SQS event"):
        handler(bad, SimpleNamespace())
