"""`serve` counts what it serves and copies: stats(), GET /.backorigin/status, the summary."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from backorigin.config import Config, load_config
from backorigin.config.units import format_size
from backorigin.local import LocalCloudFront
from backorigin.local.counters import QueueStats, SourceStats
from backorigin.local.server import STATUS_PATH
from backorigin.testing.http_origin import HttpOriginServer
from backorigin.testing.servers import free_port
from backorigin.transfer import CopyOutcome

pytestmark = pytest.mark.usefixtures("s3_env")

EVENTS = Path(__file__).resolve().parent.parent / "events"
NOTHING = SourceStats(requests=0, bytes=0, statuses={})


@pytest.fixture(scope="module")
def origin() -> Iterator[HttpOriginServer]:
    with HttpOriginServer() as server:
        yield server


def config_for(bucket: str, seaweedfs: Any, origin: HttpOriginServer) -> Config:
    # ``gone`` points at a port nobody listens on: its requests end in the edge's 502.
    return load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        "origins:\n"
        f"  - {{name: web, type: http, base_url: '{origin.url}counted/'}}\n"
        f"  - {{name: gone, type: http, base_url: 'http://127.0.0.1:{free_port()}/'}}\n"
        "routes:\n"
        "  - {prefix: gone/, origin: gone}\n"
        "  - {prefix: img/, origin: web}\n"
    )


@pytest.fixture
def cloudfront(
    bucket: str, seaweedfs: Any, s3_client: Any, origin: HttpOriginServer
) -> Iterator[LocalCloudFront]:
    config = config_for(bucket, seaweedfs, origin)
    with LocalCloudFront(config, s3_client=s3_client, port=0, workers=2) as server:
        yield server


def request(server: LocalCloudFront, path: str, method: str = "GET") -> urllib3.BaseHTTPResponse:
    return urllib3.request(method, server.url + path, retries=False, timeout=60)


def payload(size: int, seed: str) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


def test_a_miss_then_a_hit_count_one_origin_one_s3_and_one_copy(
    cloudfront: LocalCloudFront, origin: HttpOriginServer
) -> None:
    body = payload(120_000, "counted-cat")
    origin.put("counted/img/cat.bin", body)
    miss = request(cloudfront, "/img/cat.bin")
    assert (miss.status, miss.data, miss.headers["x-backorigin"]) == (200, body, "origin")
    assert cloudfront.queue.join(timeout=60), "the copy did not finish"
    hit = request(cloudfront, "/img/cat.bin")
    assert (hit.status, hit.data) == (200, body)
    assert "x-backorigin" not in hit.headers

    assert cloudfront.wait_served(2, timeout=60)
    stats = cloudfront.stats()
    assert stats.served == {
        "s3": SourceStats(requests=1, bytes=len(body), statuses={200: 1}),
        "origin": SourceStats(requests=1, bytes=len(body), statuses={200: 1}),
        "edge": NOTHING,
    }
    assert stats.copies == {outcome: int(outcome is CopyOutcome.COPIED) for outcome in CopyOutcome}
    assert stats.copied_bytes == len(body)
    assert stats.queue == QueueStats(depth=0, in_flight=0, enqueued=1, dead_letters=0)


def test_responses_made_without_either_source_count_as_the_edge(
    cloudfront: LocalCloudFront, origin: HttpOriginServer
) -> None:
    origin.reset_counters()
    answers = [
        request(cloudfront, "/img/a%00b"),  # refused key: 400
        request(cloudfront, "/.backorigin/leases/x"),  # reserved key: 400
        request(cloudfront, "/docs/readme.txt"),  # no route: 404
        request(cloudfront, "/gone/x.txt"),  # the origin does not answer: 502
        request(cloudfront, "/img/x.txt", method="POST"),  # not GET or HEAD: 405
    ]
    assert [answer.status for answer in answers] == [400, 400, 404, 502, 405]
    assert origin.total_requests() == 0
    assert cloudfront.queue.join(timeout=60)

    assert cloudfront.wait_served(5, timeout=60)
    stats = cloudfront.stats()
    assert stats.served["edge"] == SourceStats(
        requests=5,
        bytes=sum(len(answer.data) for answer in answers),
        statuses={400: 2, 404: 1, 405: 1, 502: 1},
    )
    assert stats.served["s3"] == stats.served["origin"] == NOTHING
    assert sum(stats.copies.values()) == 0
    assert stats.queue.enqueued == 0


def test_collapsed_misses_count_as_origin_responses_that_asked_no_origin(
    cloudfront: LocalCloudFront, origin: HttpOriginServer
) -> None:
    body = payload(1_000_000, "counted-hot")
    origin.put("counted/img/hot.bin", body)
    origin.reset_counters()
    viewers = 12
    barrier = threading.Barrier(viewers)
    statuses: list[int] = []

    def fetch() -> None:
        barrier.wait()
        response = request(cloudfront, "/img/hot.bin")
        statuses.append(response.status if response.data == body else -1)

    threads = [threading.Thread(target=fetch) for _ in range(viewers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * viewers
    assert cloudfront.wait_served(viewers, timeout=60)
    assert cloudfront.queue.join(timeout=60)
    served = cloudfront.stats().served["origin"]
    assert (served.requests, served.bytes) == (viewers, viewers * len(body))
    # However many collapsed (that depends on timing), each viewer either asked the origin
    # itself, with CloudFront's request id, or is counted as collapsed; the fetcher's reads
    # carry no such id.
    asked = [r for r in origin.requests("counted/img/hot.bin") if "x-amz-cf-id" in r.headers]
    assert served.collapsed == viewers - len(asked)


def test_the_status_endpoint_answers_the_counts_as_json(
    cloudfront: LocalCloudFront, origin: HttpOriginServer
) -> None:
    body = payload(5_000, "counted-json")
    origin.put("counted/img/json.bin", body)
    assert request(cloudfront, "/img/json.bin").status == 200
    assert cloudfront.queue.join(timeout=60)
    assert cloudfront.wait_served(1, timeout=60)

    response = request(cloudfront, STATUS_PATH)
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    status = json.loads(response.data)
    assert set(status) == {"uptime_seconds", "served", "copies", "queue"}
    assert status["uptime_seconds"] >= 0
    assert status["served"]["origin"] == {
        "requests": 1,
        "bytes": len(body),
        "statuses": {"200": 1},
        "collapsed": 0,
    }
    zero = {"requests": 0, "bytes": 0, "statuses": {}, "collapsed": 0}
    assert status["served"]["s3"] == status["served"]["edge"] == zero
    assert status["copies"] == {
        "outcomes": {
            "copied": 1,
            "exists": 0,
            "in_progress": 0,
            "not_found": 0,
            "too_large": 0,
            "failed": 0,
        },
        "bytes": len(body),
    }
    assert status["queue"] == {"depth": 0, "in_flight": 0, "enqueued": 1, "dead_letters": 0}
    # Asking for the status is not a viewer request: nothing more is counted.
    assert request(cloudfront, STATUS_PATH, method="HEAD").status == 200
    again = json.loads(request(cloudfront, STATUS_PATH).data)
    assert again["served"] == status["served"]


def test_the_deployed_edge_refuses_the_status_path_like_any_reserved_key(
    cloudfront: LocalCloudFront,
) -> None:
    # The same function the distribution runs: there, the path is a refused viewer key.
    event = json.loads((EVENTS / "origin-request-secondary.json").read_text())
    event["Records"][0]["cf"]["request"]["uri"] = STATUS_PATH
    result = cloudfront.edge(event, None)
    assert result["status"] == "400"
    assert "origin" not in result


def wait_for_status(url: str, done: Any) -> dict[str, Any]:
    """Poll the running server's status endpoint until ``done(status)`` holds."""
    deadline = time.monotonic() + 60
    while True:
        status: dict[str, Any] = json.loads(urllib3.request("GET", url, retries=False).data)
        if done(status):
            return status
        assert time.monotonic() < deadline, f"never reached: {status}"
        time.sleep(0.05)


def test_the_serve_command_prints_the_counts_when_it_stops(
    tmp_path: Path, bucket: str, seaweedfs: Any, origin: HttpOriginServer
) -> None:
    body = payload(40_000, "counted-cli")
    origin.put("counted/img/cli.bin", body)
    config = tmp_path / "backorigin.yaml"
    config.write_text(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        f"origins:\n  - {{name: web, type: http, base_url: '{origin.url}counted/'}}\n"
    )
    port = free_port()
    command = [sys.executable, "-m", "backorigin.cli", "serve", str(config), "--port", str(port)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        for line in process.stderr:  # the command says when it serves
            if "backorigin serving" in line:
                break
        else:
            pytest.fail(f"serve exited with {process.wait()}")
        base = f"http://127.0.0.1:{port}"
        retry = urllib3.Retry(connect=20, backoff_factor=0.1)
        miss = urllib3.request("GET", base + "/img/cli.bin", retries=retry)
        assert (miss.status, miss.data) == (200, body)
        # The server's queue is not ours to join from another process; its status tells.
        wait_for_status(base + STATUS_PATH, lambda s: s["copies"]["outcomes"]["copied"] == 1)
        hit = urllib3.request("GET", base + "/img/cli.bin", retries=False)
        assert (hit.status, hit.data) == (200, body)
        assert "x-backorigin" not in hit.headers
        refused = urllib3.request("GET", base + "/a%00b", retries=False)
        assert refused.status == 400
        process.terminate()  # SIGTERM: a clean shutdown, then the summary
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, rest
    summary = rest[rest.index("served 3 requests") :]
    lines = summary.splitlines()
    size, edge_size = format_size(len(body)), format_size(len(refused.data))
    assert " ".join(lines[1].split()) == f"from s3 1 {size} (200: 1)", summary
    assert " ".join(lines[2].split()) == f"from origin 1 {size} (200: 1)", summary
    assert " ".join(lines[3].split()) == f"at the edge 1 {edge_size} (400: 1)", summary
    assert lines[4] == (
        "copies: copied 1, exists 0, in_progress 0, not_found 0, too_large 0, failed 0; "
        f"{size} copied"
    )
    assert lines[5].startswith("copy queue: 1 enqueued, 0 unfinished (0 in flight), 0 dead-")


def test_only_the_latest_copy_results_are_kept_while_the_counters_count_every_copy(
    bucket: str, seaweedfs: Any, s3_client: Any, origin: HttpOriginServer
) -> None:
    config = config_for(bucket, seaweedfs, origin)
    keys = [f"img/kept-{n}.bin" for n in range(3)]
    for key in keys:
        origin.put(f"counted/{key}", payload(1000, key))
    with LocalCloudFront(config, s3_client=s3_client, port=0, workers=2, recent_copies=2) as server:
        for key in keys:
            assert request(server, f"/{key}").status == 200
        assert server.queue.join(timeout=60), "the copies did not finish"
        kept = server.copies
        stats = server.stats()
    assert stats.copies[CopyOutcome.COPIED] == 3
    assert len(kept) == 2
    assert {result.key for result in kept} < set(keys)
    assert all(result.outcome is CopyOutcome.COPIED for result in kept)
