"""The scheduled reconciler's handler against the emulators: a GCS old store (fake-gcs-server),
the bucket on SeaweedFS and the copy queue on moto's SQS server.

Three objects are copied; then one changes at the origin, one is deleted there and a fourth
appears. One invocation must send exactly the copy and the refresh the fetchers need, delete
the orphaned copy, and print its counts as CloudWatch EMF.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from reconcile_helpers import Legacy, Setup, gcs_origin

from backorigin.bundling import bundle
from backorigin.prewarm.scheduled import RECONCILER_METRICS, SAFETY_SECONDS, make_reconciler
from backorigin.transfer import CopyOutcome

pytestmark = pytest.mark.usefixtures("s3_env")


@pytest.fixture(scope="module")
def sqs_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def queue(sqs_server: str, bucket: str) -> SimpleNamespace:
    client = boto3.client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=sqs_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    url = client.create_queue(QueueName=f"copy-{bucket}")["QueueUrl"]
    return SimpleNamespace(client=client, url=url)


@pytest.fixture
def legacy(fake_gcs: Any) -> Legacy:
    return gcs_origin(fake_gcs)


def prepare(legacy: Legacy, setup: Setup) -> None:
    for name in ("a", "b", "c"):
        legacy.put(f"site/{name}.txt", f"{name} version one".encode())
        assert setup.engine.copy(f"site/{name}.txt").outcome is CopyOutcome.COPIED
    legacy.put("site/b.txt", b"b version two")
    legacy.delete("site/c.txt")
    legacy.put("site/d.txt", b"d, new at the origin")


def drain(queue: SimpleNamespace) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    while True:
        got = queue.client.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10)
        messages = got.get("Messages", [])
        if not messages:
            return jobs
        for message in messages:
            jobs.append(json.loads(message["Body"]))
            queue.client.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])


class Context:
    """What the handler reads of a Lambda context: the time left."""

    def __init__(self, millis: float) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return int(self.millis)


def test_one_run_enqueues_the_copy_and_the_refresh_and_deletes_the_orphan(
    legacy: Legacy, setup: Setup, queue: SimpleNamespace, s3_client: Any, bucket: str
) -> None:
    prepare(legacy, setup)
    stale_etag = s3_client.head_object(Bucket=bucket, Key="site/b.txt")["ETag"]
    lines: list[str] = []
    handler = make_reconciler(
        setup.config,
        queue_url=queue.url,
        sqs_client=queue.client,
        deletes="delete",
        s3_client=s3_client,
        metrics=lines.append,
    )
    result = handler({"prefix": "site/"}, Context(900_000))

    assert result["finished"] is True
    jobs = sorted(drain(queue), key=lambda job: str(job["key"]))
    assert jobs == [
        {"key": "site/b.txt", "replace": stale_etag},
        {"key": "site/d.txt"},
    ]
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix="site/").get("Contents", [])
    assert sorted(o["Key"] for o in listed) == ["site/a.txt", "site/b.txt"]  # c deleted

    emf, summary = (json.loads(line) for line in lines)
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "backorigin"
    assert directive["Dimensions"] == [["service"]]
    assert emf["service"] == "backorigin-reconciler"
    assert [m["Name"] for m in directive["Metrics"]] == list(RECONCILER_METRICS)
    assert {name: emf[name] for name in RECONCILER_METRICS} == {
        "ReconcileMissing": 1,
        "ReconcileStale": 1,
        "ReconcileOrphaned": 1,
        "ReconcileJobsEnqueued": 2,
        "ReconcileDeleted": 1,
        "ReconcileFailures": 0,
        "ReconcileUnfinished": 0,
        "ShareMigrated": 0.333333,  # a of a, b, d
    }
    assert summary["prefix"] == "site/"
    assert summary["results"]["copy"]["enqueued"] == 1


def test_a_walk_past_the_deadline_stops_and_says_so(
    legacy: Legacy, setup: Setup, queue: SimpleNamespace, s3_client: Any
) -> None:
    prepare(legacy, setup)
    lines: list[str] = []
    ticks = itertools.count()
    handler = make_reconciler(
        setup.config,
        queue_url=queue.url,
        sqs_client=queue.client,
        s3_client=s3_client,
        metrics=lines.append,
        clock=lambda: float(next(ticks)),
    )
    # No time left beyond the safety margin: the walk stops at the first object it emits
    # (d, the missing one: the fresh copies a, b and c are confirmed by HEADs in the pool).
    result = handler({}, Context(SAFETY_SECONDS * 1000))

    assert result["finished"] is False
    assert "WalkInterrupted" in result["status"]["error"]
    assert result["last_key"] in {"site/a.txt", "site/b.txt", "site/c.txt", "site/d.txt"}
    assert json.loads(lines[0])["ReconcileUnfinished"] == 1
    assert {"key": "site/d.txt"} not in drain(queue)  # stopped before its copy was decided


ENTRY = """
import json, sys
sys.path.insert(0, BUNDLE)
from backorigin.prewarm import scheduled
assert scheduled.__file__.startswith(BUNDLE), scheduled.__file__
result = scheduled.reconciler({"prefix": "site/"}, None)
print(json.dumps({"finished": result["finished"], "queue_url": result["queue_url"]}))
"""


def test_the_bundled_entry_reads_the_baked_config_and_its_environment(
    legacy: Legacy,
    setup: Setup,
    queue: SimpleNamespace,
    sqs_server: str,
    s3_credentials: dict[str, str],
    tmp_path: Path,
) -> None:
    """The Lambda handler as deployed: a fetcher bundle with prewarm, run in a clean process."""
    prepare(legacy, setup)
    # Dependencies come from this interpreter's site-packages, not a Lambda platform install.
    target = bundle(
        setup.config, tmp_path / "bundle", role="fetcher", include=("prewarm",), install=False
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **s3_credentials,
        "AWS_ENDPOINT_URL_SQS": sqs_server,
        "BACKORIGIN_QUEUE_URL": queue.url,
        "BACKORIGIN_DELETES": "keep",
    }
    header = f"BUNDLE = {str(target)!r}\n"
    result = subprocess.run(
        [sys.executable, "-c", header + ENTRY], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    *printed, last = result.stdout.splitlines()
    assert json.loads(last) == {"finished": True, "queue_url": queue.url}
    emf = json.loads(printed[0])
    assert emf["ReconcileJobsEnqueued"] == 2  # d copied, b refreshed; c kept
    assert emf["ReconcileDeleted"] == 0
    assert sorted(str(job["key"]) for job in drain(queue)) == ["site/b.txt", "site/d.txt"]
