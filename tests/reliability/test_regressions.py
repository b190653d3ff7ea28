"""Defects the reliability suite found, each pinned by the case that exposed it.

Each test names the fault-matrix trial (seed ``20250917``) where the defect first showed, and
reproduces it deterministically, without depending on the seed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading

from reliability_support import PART, Fault, Lab, origin_etag

from backorigin.adapters.http import HttpAdapter
from backorigin.config.origins import HttpOrigin
from backorigin.handlers import make_fetcher_handler
from backorigin.transfer import CopyEngine, CopyOutcome
from backorigin.transfer.bucket import Bucket
from backorigin.transfer.lease import Lease, lease_key


def put(lab: Lab, key: str, size: int) -> bytes:
    data = hashlib.shake_256(key.encode()).digest(size)
    lab.origin.put(key, data)
    return data


def test_a_lost_create_multipart_upload_response_leaves_no_upload_open(lab: Lab) -> None:
    """Trials s3-5xx:7 and s3-5xx:18. S3 created the upload but the response was lost;
    botocore's retry created a second one. The first was left open, known to nobody."""
    key = "regression/lost-create.bin"
    data = put(lab, key, 2 * PART + 123)
    fault = lab.proxy.inject(Fault("CreateMultipartUpload", key, status=503, after_apply=True))
    try:
        result = lab.engine(via_proxy=True).copy(key)
    finally:
        lab.proxy.clear()
    assert fault.fired == 1
    assert result.outcome is CopyOutcome.COPIED, result.reason
    stored = lab.checker.stored(key)
    assert stored is not None
    assert stored[0] == data
    assert lab.checker.open_uploads(key) == []


def test_a_copier_that_loses_its_lease_before_recording_its_upload_aborts_it(lab: Lab) -> None:
    """Trials race:6 and race:12 (a second copier with a skewed clock took the lease over).
    The first copier created its multipart upload, then failed to record it in the lease it
    had just lost, and stopped: nobody knew the upload any more."""
    key = "regression/lost-lease.bin"
    put(lab, key, 2 * PART + 7)
    # The lease is created (PutObject 1), then updated with the upload id (PutObject 2):
    # answer that update as S3 does when someone else rewrote the lease meanwhile.
    lab.proxy.inject(
        Fault("PutObject", lease_key("", key), status=412, code="PreconditionFailed", skip=1)
    )
    try:
        result = lab.engine(via_proxy=True).copy(key)
    finally:
        lab.proxy.clear()
    assert result.outcome is CopyOutcome.IN_PROGRESS, result
    assert lab.checker.open_uploads(key) == []


def test_an_upload_left_by_a_copier_killed_before_recording_it_is_cleaned_up(lab: Lab) -> None:
    """The same orphan as above, made by a copier that died between CreateMultipartUpload and
    writing the upload id into its lease: the next copy of the key aborts it."""
    key = "regression/orphan.bin"
    data = put(lab, key, PART + 1)
    orphan = lab.s3.create_multipart_upload(Bucket=lab.bucket, Key=key)["UploadId"]
    result = lab.engine().copy(key)
    assert result.outcome is CopyOutcome.COPIED, result.reason
    assert orphan not in lab.checker.open_uploads(key)
    assert lab.checker.open_uploads(key) == []
    stored = lab.checker.stored(key)
    assert stored is not None
    assert stored[0] == data


def test_a_409_on_a_single_part_put_is_retried(lab: Lab) -> None:
    """Trials race:2 and race:4. S3 answers a conditional PutObject with 409
    ConditionalRequestConflict when another conditional write is in flight, and says to retry;
    the engine retried that for CompleteMultipartUpload but failed a single-part copy."""
    key = "regression/conflict.bin"
    data = put(lab, key, 1000)
    etag = origin_etag(lab.origin.url, key)
    lab.proxy.inject(Fault("PutObject", key, status=409, code="ConditionalRequestConflict"))
    try:
        result = lab.engine(via_proxy=True).copy(key)
    finally:
        lab.proxy.clear()
    assert result.outcome is CopyOutcome.COPIED, result.reason
    stored = lab.checker.stored(key)
    assert stored is not None
    assert stored[0] == data
    assert stored[1]["backorigin-origin-etag"] == etag


def test_a_batch_whose_only_copy_must_be_retried_is_reported_not_raised(lab: Lab) -> None:
    """Found by the malformed-SQS probes. Powertools raises when every record of a batch
    failed, so with batches of one (the construct's default) every ``in_progress`` or
    ``failed`` copy became a Lambda error — tripping the "fetcher crashed" alarm on routine
    retries — instead of the documented partial batch response."""
    key = "regression/held.bin"
    put(lab, key, PART + 100)  # a multipart copy: objects of one part take no lease
    held = Lease.acquire(Bucket(lab.direct, lab.bucket), "", key, ttl=30)
    assert held is not None
    try:
        fetcher = make_fetcher_handler(lab.config(), s3_client=lab.direct)
        for body in (json.dumps({"key": key}), json.dumps({"key": "../invalid"})):
            record = {"messageId": "only", "body": body, "eventSource": "aws:sqs"}
            response = fetcher({"Records": [record]}, None)
            assert response == {"batchItemFailures": [{"itemIdentifier": "only"}]}
    finally:
        held.release()


def test_a_read_timeout_mid_body_resumes_from_the_first_missing_byte(lab: Lab) -> None:
    """Trial stall:4 of seed 1. The HTTP adapter read the body in 256 KiB ``read`` calls; a
    read timeout inside one threw away the bytes that call had already received, so the resume
    asked for them again (a 4 KB object was read twice)."""
    key = "regression/stall-mid-body.bin"
    data = put(lab, key, 200_000)
    # The first response goes quiet after 150 000 bytes until the copier gives up on it.
    gate = lab.origin.hold(key, which=lambda n: n == 1, after_bytes=150_000)
    try:
        result = lab.engine(http={"read_timeout": "1s", "retries": 0}).copy(key)
    finally:
        lab.origin.clear_faults(key)
    assert result.outcome is CopyOutcome.COPIED, result.reason
    assert gate.abandoned == 1
    ranges = [r.headers.get("range") for r in lab.origin.requests(key) if r.method == "GET"]
    assert ranges == ["bytes=0-199999", "bytes=150000-199999"]
    assert lab.origin.bytes_served(key) == len(data)


class LyingHeadOrigin:
    """A web server whose HEAD states 1000 bytes while GET serves 5000, under one strong ETag
    (a server bug, or an object that changed without its ETag changing)."""

    data = hashlib.shake_256(b"lying head").digest(5000)

    def __init__(self) -> None:
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            headers = {"ETag": '"same"', "Accept-Ranges": "bytes"}
            if request.method == "HEAD":
                return web.Response(headers={**headers, "Content-Length": "1000"})
            start, stop, _ = request.http_range.indices(len(self.data))
            if request.headers.get("Range"):
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(self.data)}"
                return web.Response(status=206, body=self.data[start:stop], headers=headers)
            return web.Response(body=self.data, headers=headers)

        self.loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", handle)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", 0).start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()


def test_a_head_that_understates_the_size_stores_nothing(lab: Lab) -> None:
    """Found by a probe next to the lying-checksum trials. A strong ETag pin said nothing about
    the size, so a 206 of ``bytes 0-999/5000`` passed for the 1000-byte object HEAD described,
    and S3 got the first 1000 bytes of a 5000-byte object."""
    origin = LyingHeadOrigin()
    try:
        config = lab.config()
        settings = config.origins[0].model_copy(update={"base_url": origin.url})
        assert isinstance(settings, HttpOrigin)
        engine = CopyEngine(config, s3_client=lab.direct, adapters={"web": HttpAdapter(settings)})
        result = engine.copy("regression/lying-head.bin")
        engine.close()
    finally:
        origin.stop()
    assert result.outcome is CopyOutcome.FAILED, result
    assert "changed" in (result.reason or "")
    assert lab.checker.stored("regression/lying-head.bin") is None
