"""Distributed prewarm: jobs into a real (moto) SQS queue, drained by the fetcher into SeaweedFS."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from prewarm_helpers import (
    MOTO_ENV,
    payload,
    queued_keys,
    read_all,
    run_prewarm,
    stored_keys,
    summary,
)

from backorigin.config import load_config
from backorigin.handlers import make_fetcher_handler
from backorigin.prewarm import Enqueuer, KeyWriter
from backorigin.testing.http_origin import HttpOriginServer

EVENTS = Path(__file__).resolve().parent.parent / "events"


def drain(sqs: Any, queue_url: str, handler: Any) -> tuple[int, int]:
    """Deliver the queue's messages to the fetcher in batches of ten, like the Lambda event
    source mapping: delete what the handler acknowledged, leave its batch item failures.

    Returns the number of messages delivered and of batch item failures.
    """
    template = json.loads((EVENTS / "sqs-copy-job.json").read_text())["Records"][0]
    delivered = failures = 0
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return delivered, failures
        records = []
        for message in messages:
            record = copy.deepcopy(template)
            record["messageId"] = message["MessageId"]
            record["receiptHandle"] = message["ReceiptHandle"]
            record["body"] = message["Body"]
            records.append(record)
        response = handler({"Records": records}, None)
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        delivered += len(messages)
        failures += len(failed)
        done = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(messages)
            if m["MessageId"] not in failed
        ]
        if done:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)


def test_jobs_enqueued_in_batches_are_copied_by_the_fetcher(
    tmp_path: Path,
    origin: HttpOriginServer,
    seaweedfs: Any,
    s3_client: Any,
    bucket: str,
    sqs: Any,
    queue_url: str,
    environment: dict[str, str],
    s3_env: None,
) -> None:
    keys = [f"sqs/{i % 7}/object-{i:03d}.txt" for i in range(205)]
    data = {key: payload(700 + len(key), key) for key in keys}
    for key in keys:
        origin.put(key, data[key])
    key_file = tmp_path / "keys.txt"
    key_file.write_text("".join(k + "\n" for k in keys))
    config_text = (
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        "origins:\n"
        f"  - {{name: web, type: http, base_url: '{origin.url}', retries: 0}}\n"
    )
    config = tmp_path / "backorigin.yaml"
    config.write_text(config_text)
    # The CLI derives the endpoint from a non-AWS queue URL; credentials come from the chain.
    env = {**environment, **MOTO_ENV}

    dry = run_prewarm(
        env, str(config), "--keys", str(key_file), "--queue-url", queue_url, "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert len(dry.stdout.splitlines()) == len(keys)
    assert "would be enqueued" in dry.stderr
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)

    result = run_prewarm(env, str(config), "--keys", str(key_file), "--queue-url", queue_url)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = summary(result.stdout)
    assert rows["enqueued"] == str(len(keys))
    assert rows["failed to enqueue"] == "0"
    assert rows["SendMessageBatch calls"] == "21"  # 205 jobs, ten per call
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == str(len(keys))

    handler = make_fetcher_handler(load_config(config_text), s3_client=s3_client)
    delivered, failures = drain(sqs, queue_url, handler)
    assert (delivered, failures) == (len(keys), 0)
    assert stored_keys(s3_client, bucket) == set(keys)
    assert read_all(s3_client, bucket, keys) == data


def test_keys_the_fetcher_could_never_copy_are_rejected_before_enqueueing(
    tmp_path: Path, queue_url: str, sqs: Any, environment: dict[str, str]
) -> None:
    config = tmp_path / "backorigin.yaml"
    config.write_text(
        "bucket: {name: some-bucket}\n"
        "origins: [{name: web, type: http, base_url: 'http://127.0.0.1:9/'}]\n"
        "routes: [{prefix: ok/, origin: web}]\n"
    )
    keys = ["ok/a", "ok/../etc/passwd", "elsewhere/b", ".backorigin/leases/x", "ok/b"]
    env = {**environment, **MOTO_ENV}
    result = run_prewarm(
        env, str(config), "--keys", "-", "--queue-url", queue_url, input_text="\n".join(keys)
    )
    assert result.returncode == 1
    rows = summary(result.stdout)
    assert rows["enqueued"] == "2"
    assert rows["rejected (invalid key or no route)"] == "3"
    assert "ok/../etc/passwd" in result.stderr
    bodies = [
        json.loads(m["Body"])["key"]
        for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    ]
    assert sorted(bodies) == ["ok/a", "ok/b"]


class FlakySqs:
    """The real (moto) SQS client, except that chosen entries fail the first time(s) they are
    sent: SQS's partial batch failure, which moto itself never produces.

    Args:
        client: The real client.
        transient: Keys refused ``Failed`` with ``SenderFault: false`` this many times each.
        sender_fault: Keys always refused with ``SenderFault: true``.
        outages: Whole calls that fail with a ClientError first.
    """

    def __init__(
        self,
        client: Any,
        *,
        transient: dict[str, int],
        sender_fault: set[str],
        outages: int = 0,
    ) -> None:
        self.client = client
        self.transient = dict(transient)
        self.sender_fault = sender_fault
        self.outages = outages
        self.calls = 0

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, str]]) -> Any:  # noqa: N803
        self.calls += 1
        if self.outages:
            self.outages -= 1
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailable", "Message": "try again"}},
                "SendMessageBatch",
            )
        passed, failed = [], []
        for entry in Entries:
            key = json.loads(entry["MessageBody"])["key"]
            if key in self.sender_fault:
                failed.append(
                    {"Id": entry["Id"], "SenderFault": True, "Code": "InvalidMessageContents"}
                )
            elif self.transient.get(key, 0) > 0:
                self.transient[key] -= 1
                failed.append({"Id": entry["Id"], "SenderFault": False, "Code": "InternalError"})
            else:
                passed.append(entry)
        response = (
            self.client.send_message_batch(QueueUrl=QueueUrl, Entries=passed) if passed else {}
        )
        return {"Successful": response.get("Successful", []), "Failed": failed}


def test_partial_batch_failures_are_retried_a_bounded_number_of_times(
    tmp_path: Path, sqs: Any, queue_url: str
) -> None:
    keys = [f"k/{i:02d}" for i in range(25)]
    flaky = FlakySqs(
        sqs,
        transient={"k/03": 1, "k/04": 2, "k/17": 1, "k/20": 9},
        sender_fault={"k/11"},
        outages=1,
    )
    pauses: list[float] = []
    enqueuer = Enqueuer(flaky, queue_url, attempts=4, backoff=0.1, sleep=pauses.append)
    failed_file = tmp_path / "failed.txt"
    with KeyWriter(failed_file) as failed:
        tally = enqueuer.send_all(keys, concurrency=1, failed=failed)
    assert (tally.sent, tally.failed) == (23, 2)
    assert sorted(failed_file.read_text().splitlines()) == ["k/11", "k/20"]
    reasons = dict(tally.examples)
    assert reasons["k/11"].startswith("InvalidMessageContents")
    assert reasons["k/20"].startswith("InternalError")
    # Every accepted job is in the queue exactly once.
    assert sorted(queued_keys(sqs, queue_url)) == sorted(set(keys) - {"k/11", "k/20"})
    # Batch 1: an outage, then k/03 and k/04 refused, then k/04 once more (4 calls); batch 2:
    # k/11 refused for good, k/17 once (2 calls); batch 3: k/20 refused until the attempts
    # run out (4 calls).
    assert tally.batches == flaky.calls == 4 + 2 + 4
    assert pauses == [0.1, 0.2, 0.4, 0.1, 0.1, 0.2, 0.4]


def test_a_queue_that_cannot_work_stops_the_run_at_once(
    tmp_path: Path, moto: str, environment: dict[str, str]
) -> None:
    config = tmp_path / "backorigin.yaml"
    config.write_text(
        "bucket: {name: some-bucket}\n"
        "origins: [{name: web, type: http, base_url: 'http://127.0.0.1:9/'}]\n"
    )
    missing = f"{moto}/123456789012/no-such-queue"
    keys = "".join(f"k/{i}\n" for i in range(500))
    result = run_prewarm(
        {**environment, **MOTO_ENV},
        str(config),
        "--keys",
        "-",
        "--queue-url",
        missing,
        input_text=keys,
    )
    # "At once" is the single refusal below, not a time limit a busy machine could miss.
    assert result.returncode == 1
    assert "NonExistentQueue" in result.stderr
    assert result.stderr.count("NonExistentQueue") == 1  # not retried batch after batch
