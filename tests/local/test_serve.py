"""End to end through the local CloudFront stand-in: S3 first, then the legacy origin."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from backorigin.config import load_config
from backorigin.local import LocalCloudFront
from backorigin.testing.http_origin import HttpOriginServer
from backorigin.testing.servers import free_port

pytestmark = pytest.mark.usefixtures("s3_env")


@pytest.fixture(scope="module")
def origin() -> Iterator[HttpOriginServer]:
    with HttpOriginServer() as server:
        yield server


@pytest.fixture
def cloudfront(
    bucket: str, seaweedfs: Any, s3_client: Any, origin: HttpOriginServer
) -> Iterator[LocalCloudFront]:
    config = load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        "origins:\n"
        f"  - {{name: web, type: http, base_url: '{origin.url}site/'}}\n"
        "edge: {negative_ttl: 17s}\n"
        "copy: {part_size: 5MiB}\n"
    )
    with LocalCloudFront(config, s3_client=s3_client, port=0, workers=2) as server:
        yield server


def get(server: LocalCloudFront, path: str, **headers: str) -> urllib3.BaseHTTPResponse:
    return urllib3.request("GET", server.url + path, headers=headers, retries=False)


def wait_for_copies(server: LocalCloudFront) -> None:
    assert server.queue.join(timeout=60), "copies did not finish"


def payload(size: int, seed: str) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


def test_miss_then_hit(
    cloudfront: LocalCloudFront, origin: HttpOriginServer, s3_client: Any, bucket: str
) -> None:
    body = payload(300_000, "cat")
    origin.put(
        "site/img/cat.jpg",
        body,
        headers={"Content-Type": "image/jpeg", "Cache-Control": "max-age=600"},
    )
    first = get(cloudfront, "/img/cat.jpg")
    assert (first.status, first.data) == (200, body)
    assert first.headers["x-backorigin"] == "origin"
    assert first.headers["content-type"] == "image/jpeg"
    wait_for_copies(cloudfront)
    head = s3_client.head_object(Bucket=bucket, Key="img/cat.jpg")
    assert head["ContentType"] == "image/jpeg"
    assert head["CacheControl"] == "max-age=600"
    assert head["Metadata"]["backorigin-origin"] == "web"
    origin.reset_counters()
    second = get(cloudfront, "/img/cat.jpg")
    assert (second.status, second.data) == (200, body)
    assert "x-backorigin" not in second.headers
    assert origin.request_count("site/img/cat.jpg") == 0
    ranged = get(cloudfront, "/img/cat.jpg", Range="bytes=10-19")
    assert (ranged.status, ranged.data) == (206, body[10:20])
    etag = second.headers["etag"]
    assert get(cloudfront, "/img/cat.jpg", **{"If-None-Match": etag}).status == 304


def test_a_range_on_a_miss(cloudfront: LocalCloudFront, origin: HttpOriginServer) -> None:
    body = payload(50_000, "ranged")
    origin.put("site/ranged.bin", body)
    response = get(cloudfront, "/ranged.bin", Range="bytes=100-199")
    assert (response.status, response.data) == (206, body[100:200])
    assert response.headers["x-backorigin"] == "origin"


def test_origin_404_is_negatively_cacheable(cloudfront: LocalCloudFront) -> None:
    response = get(cloudfront, "/nowhere.txt")
    assert response.status == 404
    assert response.headers["cache-control"] == "max-age=17"


def test_rejected_key_never_reaches_the_origin(
    cloudfront: LocalCloudFront, origin: HttpOriginServer
) -> None:
    origin.reset_counters()
    for path in ("/a/%2e%2e/secret", "/a%00b", "/.backorigin/leases/x"):
        response = get(cloudfront, path)
        assert response.status == 400, path
    assert origin.total_requests() == 0


def test_concurrent_misses_make_one_copy_and_correct_bodies(
    cloudfront: LocalCloudFront, origin: HttpOriginServer, s3_client: Any, bucket: str
) -> None:
    body = payload(2_000_000, "hot")
    origin.put("site/hot.bin", body)
    origin.reset_counters()
    barrier = threading.Barrier(50)
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def fetch() -> None:
        barrier.wait()
        response = get(cloudfront, "/hot.bin")
        with lock:
            results.append((response.status, response.data))

    threads = [threading.Thread(target=fetch) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 50
    assert all(status == 200 and data == body for status, data in results)
    wait_for_copies(cloudfront)
    copied = [c for c in cloudfront.copies if c.key == "hot.bin" and c.outcome.value == "copied"]
    assert len(copied) == 1
    assert s3_client.get_object(Bucket=bucket, Key="hot.bin")["Body"].read() == body
    # collapsing: far fewer full GETs than viewers (copies read the origin once more)
    assert origin.bytes_served("site/hot.bin") < 10 * len(body)


def test_head_requests(cloudfront: LocalCloudFront, origin: HttpOriginServer) -> None:
    origin.put("site/h.txt", b"hello")
    response = urllib3.request("HEAD", cloudfront.url + "/h.txt", retries=False)
    assert response.status == 200
    assert response.headers["content-length"] == "5"
    assert response.data == b""


@pytest.mark.parametrize("keep", [False, True])
def test_the_serve_command_hides_provenance_unless_asked_and_serves_the_root(
    keep: bool,
    tmp_path: Path,
    bucket: str,
    seaweedfs: Any,
    s3_client: Any,
    origin: HttpOriginServer,
) -> None:
    origin.put("cli/index.html", b"<p>root</p>", headers={"Content-Type": "text/html"})
    config = tmp_path / "backorigin.yaml"
    config.write_text(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        f"origins:\n  - {{name: web, type: http, base_url: '{origin.url}cli/'}}\n"
    )
    port = free_port()
    command = [sys.executable, "-m", "backorigin.cli", "serve", str(config), "--port", str(port)]
    if keep:
        command.append("--expose-provenance")
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        for line in process.stderr:  # the command says when it serves
            if "backorigin serving" in line:
                break
        else:
            pytest.fail(f"serve exited with {process.wait()}")
        url = f"http://127.0.0.1:{port}/"
        first = urllib3.request("GET", url, retries=urllib3.Retry(connect=20, backoff_factor=0.1))
        assert (first.status, first.data) == (200, b"<p>root</p>")
        waiter = s3_client.get_waiter("object_exists")
        waiter.wait(Bucket=bucket, Key="index.html", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        hit = urllib3.request("GET", url, retries=False)
        assert (hit.status, hit.data) == (200, b"<p>root</p>")
        assert "x-backorigin" not in hit.headers  # served from the bucket
        assert ("x-amz-meta-backorigin-origin" in hit.headers) is keep
    finally:
        process.terminate()
        process.wait(timeout=30)
