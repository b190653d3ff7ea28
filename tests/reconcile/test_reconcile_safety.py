"""What reconcile must never do: clobber or delete an object the application wrote.

A refresh and a delete are conditional on the ETag of the copy that was examined. These
tests make the application write over a copy *between* the comparison and the action (the
``on_action`` hook runs right before each action) and check that S3 refuses the write. The
S3-compatible emulator enforces ``If-Match`` on PutObject, CompleteMultipartUpload and
DeleteObject (412), as Amazon S3 does: "How to prevent object overwrites with conditional
writes" and "How to perform conditional deletes" in the Amazon S3 User Guide.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from reconcile_helpers import Legacy, Setup, SetupFor, gcs_origin, s3_origin

from backorigin.handlers import make_fetcher_handler
from backorigin.prewarm import (
    Action,
    ActionResult,
    Entry,
    ReconcileSummary,
    State,
    reconcile,
    status,
)
from backorigin.testing.http_origin import HttpOriginServer
from backorigin.transfer import CopyOutcome, CopyResult
from backorigin.transfer.lease import Lease

pytestmark = pytest.mark.usefixtures("s3_env")

APP = b"written by the application"


@pytest.fixture
def gcs(fake_gcs: Any, setup_for: SetupFor) -> tuple[Legacy, Setup]:
    legacy = gcs_origin(fake_gcs)
    return legacy, setup_for(legacy)


def body(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_a_refresh_refuses_when_the_application_overwrote_the_copy_meanwhile(
    gcs: tuple[Legacy, Setup], s3_client: Any, bucket: str
) -> None:
    legacy, setup = gcs
    legacy.put("p/x.txt", b"version one")
    legacy.put("p/y.txt", b"version one")
    assert setup.engine.copy("p/x.txt").outcome is CopyOutcome.COPIED
    assert setup.engine.copy("p/y.txt").outcome is CopyOutcome.COPIED
    legacy.put("p/x.txt", b"version two")
    legacy.put("p/y.txt", b"version two")

    def app_writes_first(action: Action, entry: Entry) -> None:
        if action is Action.REFRESH and entry.key == "p/x.txt":
            s3_client.put_object(Bucket=bucket, Key="p/x.txt", Body=APP)

    summary = reconcile(setup.config, engine=setup.engine, on_action=app_writes_first)
    assert summary.planned[Action.REFRESH] == 2
    assert summary.count(ActionResult.REFUSED, Action.REFRESH) == 1
    assert summary.count(ActionResult.DONE, Action.REFRESH) == 1
    assert [(a, k) for a, k, _ in summary.examples] == [(Action.REFRESH, "p/x.txt")]
    assert body(s3_client, bucket, "p/x.txt") == APP
    assert body(s3_client, bucket, "p/y.txt") == b"version two"
    # The application's object is now what viewers get: nothing is left to do.
    assert status(setup.config, adapter=setup.engine.adapter, bucket=setup.engine.bucket).complete


def test_a_delete_refuses_when_the_application_overwrote_the_orphan_meanwhile(
    gcs: tuple[Legacy, Setup], s3_client: Any, bucket: str
) -> None:
    legacy, setup = gcs
    for name in ("gone-1", "gone-2"):
        legacy.put(f"p/{name}", b"soon gone")
        assert setup.engine.copy(f"p/{name}").outcome is CopyOutcome.COPIED
        legacy.delete(f"p/{name}")

    def app_writes_first(action: Action, entry: Entry) -> None:
        if action is Action.DELETE and entry.key == "p/gone-1":
            s3_client.put_object(Bucket=bucket, Key="p/gone-1", Body=APP)

    summary = reconcile(
        setup.config, engine=setup.engine, deletes="delete", on_action=app_writes_first
    )
    assert summary.count(ActionResult.REFUSED, Action.DELETE) == 1
    assert summary.count(ActionResult.DONE, Action.DELETE) == 1
    assert body(s3_client, bucket, "p/gone-1") == APP
    with pytest.raises(s3_client.exceptions.ClientError):
        s3_client.head_object(Bucket=bucket, Key="p/gone-2")


def test_the_engine_replaces_only_a_copy_it_made(
    gcs: tuple[Legacy, Setup], s3_client: Any, bucket: str
) -> None:
    legacy, setup = gcs
    legacy.put("k", b"origin bytes")
    etag = s3_client.put_object(Bucket=bucket, Key="k", Body=APP)["ETag"]
    # The right ETag, but the object carries no provenance: the application's, left alone.
    result = setup.engine.copy("k", replace=etag)
    assert result.outcome is CopyOutcome.EXISTS
    assert "not copied by backorigin" in (result.reason or "")
    assert body(s3_client, bucket, "k") == APP
    # A key with nothing in the bucket is copied as usual (create-only).
    legacy.put("fresh", b"new")
    assert setup.engine.copy("fresh", replace='"0123"').outcome is CopyOutcome.COPIED


@pytest.mark.parametrize("right_etag", [False, True])
def test_a_multipart_refresh_completes_only_over_the_examined_copy(
    s3_legacy: Legacy, setup_for: SetupFor, s3_client: Any, bucket: str, right_etag: bool
) -> None:
    setup = setup_for(s3_legacy, "copy: {part_size: 5MiB}\n")
    size = 5 * 1024 * 1024 + 1000  # two parts
    s3_legacy.put("big.bin", b"1" * size)
    assert setup.engine.copy("big.bin").outcome is CopyOutcome.COPIED
    old = s3_client.head_object(Bucket=bucket, Key="big.bin")["ETag"]
    s3_legacy.put("big.bin", b"2" * size)
    if not right_etag:
        # The application replaces the copy after it was examined as stale.
        s3_client.put_object(
            Bucket=bucket, Key="big.bin", Body=APP, Metadata={"backorigin-origin": "old"}
        )
    result = setup.engine.copy("big.bin", replace=old)
    stored = body(s3_client, bucket, "big.bin")
    if right_etag:
        assert result.outcome is CopyOutcome.COPIED, result.reason
        assert stored == b"2" * size
    else:
        assert result.outcome is CopyOutcome.EXISTS
        assert stored == APP
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u for u in uploads if u["Key"] == "big.bin"] == []


@pytest.fixture
def s3_legacy(
    seaweedfs: Any, s3_client: Any, s3_credentials: dict[str, str], fake_gcs: Any
) -> Legacy:
    """An old store on the S3-compatible emulator (a route's fallback)."""
    return s3_origin(seaweedfs, s3_client, s3_credentials, fake_gcs)


def test_through_the_queue_the_fetcher_copies_and_refreshes(
    gcs: tuple[Legacy, Setup], s3_client: Any, bucket: str
) -> None:
    legacy, setup = gcs
    legacy.put("q/stale", b"one")
    assert setup.engine.copy("q/stale").outcome is CopyOutcome.COPIED
    legacy.put("q/stale", b"two, longer")
    legacy.put("q/missing", b"never copied")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        sqs = boto3.client(
            "sqs",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        queue = sqs.create_queue(QueueName=f"copy-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        summary = reconcile(
            setup.config,
            queue_url=queue,
            sqs_client=sqs,
            adapter=setup.engine.adapter,
            s3_client=s3_client,
        )
        assert summary.count(ActionResult.ENQUEUED) == 2, summary.examples
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    finally:
        server.stop()
    bodies = sorted((json.loads(m["Body"]) for m in messages), key=lambda b: b["key"])
    old_etag = s3_client.head_object(Bucket=bucket, Key="q/stale")["ETag"]
    assert bodies == [{"key": "q/missing"}, {"key": "q/stale", "replace": old_etag}]
    handler = make_fetcher_handler(setup.config, engine=setup.engine)
    event = {
        "Records": [
            {
                "messageId": str(i),
                "receiptHandle": "r",
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:copy",
                "awsRegion": "us-east-1",
            }
            for i, m in enumerate(messages)
        ]
    }
    assert handler(event) == {"batchItemFailures": []}
    assert body(s3_client, bucket, "q/stale") == b"two, longer"
    assert body(s3_client, bucket, "q/missing") == b"never copied"
    assert status(setup.config, adapter=setup.engine.adapter, bucket=setup.engine.bucket).complete


def test_an_http_origin_is_checked_from_a_keys_file(
    bucket: str, seaweedfs: Any, s3_client: Any, tmp_path: Path
) -> None:
    from backorigin.config import load_config
    from backorigin.transfer import CopyEngine

    with HttpOriginServer() as web:
        config = load_config(
            f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
            f"origins:\n  - {{name: web, type: http, base_url: '{web.url}', retries: 0}}\n"
        )
        engine = CopyEngine(config, s3_client=s3_client)
        for name in ("a", "b", "c"):
            web.put(name, f"{name} one".encode())
            assert engine.copy(name).outcome is CopyOutcome.COPIED
        web.replace("b", b"b two, longer")
        web.delete("c")
        web.put("d", b"d new")
        listed = status(config, adapter=engine.adapter, bucket=engine.bucket)
        assert not listed.ok
        assert "web" in listed.not_listable  # http cannot be listed
        keys = ["a", "b", "c", "d"]
        report = status(config, keys=keys, adapter=engine.adapter, bucket=engine.bucket)
        assert report.ok, report.failure_examples
        assert {s: report.objects[s] for s in State if report.objects[s]} == {
            State.MIGRATED: 1,
            State.STALE: 1,
            State.ORPHANED: 1,
            State.MISSING: 1,
        }
        summary = reconcile(config, keys=keys, engine=engine, deletes="delete")
        assert summary.ok, summary.examples
        assert summary.count(ActionResult.DONE) == 3
        after = status(config, keys=keys, adapter=engine.adapter, bucket=engine.bucket)
        assert after.complete
        assert after.objects[State.MIGRATED] == 3
        assert body(s3_client, bucket, "b") == b"b two, longer"


def test_a_key_another_copier_holds_is_copied_once_its_lease_expires(
    fake_gcs: Any, setup_for: SetupFor, s3_client: Any, bucket: str
) -> None:
    legacy = gcs_origin(fake_gcs)
    # Only a copy of more than one part takes a lease: 6 MiB is two parts of 5 MiB. Held
    # keys are tried every 2 s for 2 x 8 s + 5 s.
    extra = "copy: {part_size: 5MiB, lease_ttl: 8s}\n"
    setup = setup_for(legacy, extra)
    legacy.put("held/big.bin", b"b" * (6 * 1024 * 1024))
    legacy.put("held/small.txt", b"small")
    # A copier that died holding the lease of held/big.bin; it expires when the test says so.
    lease = Lease.acquire(setup.engine.bucket, "", "held/big.bin", ttl=600)
    assert lease is not None

    outcomes: list[CopyOutcome] = []
    retried = threading.Event()
    copy = setup.engine.copy

    def observed(key: str, **options: Any) -> CopyResult:
        result = copy(key, **options)
        if key == "held/big.bin":
            outcomes.append(result.outcome)
            if outcomes.count(CopyOutcome.IN_PROGRESS) >= 2:
                retried.set()
        return result

    setup.engine.copy = observed  # type: ignore[method-assign]  # observed, not replaced
    summaries: list[ReconcileSummary] = []
    run = threading.Thread(
        target=lambda: summaries.append(reconcile(setup.config, engine=setup.engine))
    )
    run.start()
    try:
        assert retried.wait(60), f"the held key was not tried again: {outcomes}"
    finally:
        lease.suspend()  # the dead copier's lease expires now
        run.join(120)
    assert not run.is_alive()
    assert summaries[0].count(ActionResult.DONE, Action.COPY) == 2, summaries[0]
    assert summaries[0].count(ActionResult.FAILED) == 0
    assert outcomes[-1] is CopyOutcome.COPIED
    assert body(s3_client, bucket, "held/big.bin") == b"b" * (6 * 1024 * 1024)
