"""`prewarm --list` on a real GCS emulator (fake-gcs-server): rewrites, fallbacks, staleness."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prewarm_helpers import MOTO_ENV, payload, queued_keys, read_all, run_prewarm, stored_keys
from prewarm_helpers import summary as rows_of

from backorigin.testing.http_origin import HttpOriginServer
from backorigin.testing.servers import FakeGcsServer

storage = pytest.importorskip("google.cloud.storage")
credentials = pytest.importorskip("google.auth.credentials")

IMAGES = [f"img-{i:03d}.png" for i in range(120)]
DOCS = [f"d-{i:02d}.txt" for i in range(30)]
OTHERS = [f"x-{i}.md" for i in range(10)]  # below docs/, but the route wants .txt


@pytest.fixture(scope="module")
def fake_gcs() -> Iterator[FakeGcsServer]:
    with FakeGcsServer() as server:
        yield server


@pytest.fixture(scope="module")
def gcs_bucket(fake_gcs: FakeGcsServer) -> Iterator[Any]:
    """A GCS bucket holding the old site under ``site/``, plus something outside it."""
    client = storage.Client(
        project="test-project",
        credentials=credentials.AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs.url},
    )
    bucket = client.create_bucket(f"old-{uuid.uuid4().hex[:12]}")
    for name in IMAGES:
        bucket.blob(f"site/assets/{name}").upload_from_string(
            payload(300 + len(name), name), content_type="image/png"
        )
    for name in DOCS:
        bucket.blob(f"site/docs/{name}").upload_from_string(payload(200, "gcs" + name))
    for name in OTHERS:
        bucket.blob(f"site/docs/{name}").upload_from_string(b"no viewer key reaches this")
    bucket.blob("site/other/z.txt").upload_from_string(b"no route leads here: never listed")
    bucket.blob("outside/y.txt").upload_from_string(b"not below the origin prefix")
    yield bucket
    client.close()


def write_config(
    path: Path, bucket: str, seaweedfs: Any, fake_gcs: FakeGcsServer, gcs_bucket: Any, web: str
) -> Path:
    path.write_text(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        "origins:\n"
        f"  - name: store\n"
        f"    type: gcs\n"
        f"    bucket: {gcs_bucket.name}\n"
        f"    endpoint_url: '{fake_gcs.url}'\n"
        f"    prefix: site/\n"
        f"    auth: {{mode: anonymous}}\n"
        f"  - {{name: web, type: http, base_url: '{web}', retries: 0}}\n"
        "routes:\n"
        "  - prefix: media/\n"
        "    origin: store\n"
        "    rewrite: {strip_prefix: media/, add_prefix: assets/}\n"
        "  - {prefix: docs/, suffix: .txt, origin: web, fallback: [store]}\n"
    )
    return path


def test_list_walks_the_origin_and_copies_under_viewer_keys(
    tmp_path: Path,
    fake_gcs: FakeGcsServer,
    gcs_bucket: Any,
    origin: HttpOriginServer,
    seaweedfs: Any,
    s3_client: Any,
    bucket: str,
    environment: dict[str, str],
) -> None:
    # The route's primary (an HTTP origin, which cannot be listed) has one of the documents:
    # the copy takes that one from there, as a viewer request would; the rest fall back.
    origin.put("docs/d-00.txt", b"the web server's own copy")
    config = write_config(
        tmp_path / "backorigin.yaml", bucket, seaweedfs, fake_gcs, gcs_bucket, origin.url
    )

    dry = run_prewarm(environment, str(config), "--list", "media/", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert len(lines) == len(IMAGES)
    assert lines[0] == f"media/{IMAGES[0]}\tstore\tassets/{IMAGES[0]}\t{300 + len(IMAGES[0])}"
    assert stored_keys(s3_client, bucket) == set()

    result = run_prewarm(environment, str(config), "--list", "--concurrency", "8")
    # Everything listable is copied; the exit status says the HTTP origin was not listed.
    assert result.returncode == 1, result.stdout + result.stderr
    rows = rows_of(result.stdout)
    assert rows["copied"] == str(len(IMAGES) + len(DOCS)), result.stdout
    assert rows["failed"] == "0"
    assert rows["listed at the origins"] == str(len(IMAGES) + len(DOCS) + len(OTHERS))
    assert rows["unreachable (skipped)"] == str(len(OTHERS))
    assert "origin web was not listed" in result.stderr
    assert "store: docs/x-0.md" in result.stderr

    viewer = [f"media/{n}" for n in IMAGES] + [f"docs/{n}" for n in DOCS]
    assert stored_keys(s3_client, bucket) == set(viewer)
    stored = read_all(s3_client, bucket, viewer)
    for name in IMAGES:
        assert stored[f"media/{name}"] == payload(300 + len(name), name)
    assert stored["docs/d-00.txt"] == b"the web server's own copy"
    for name in DOCS[1:]:
        assert stored[f"docs/{name}"] == payload(200, "gcs" + name)
    head = s3_client.head_object(Bucket=bucket, Key=f"media/{IMAGES[3]}")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"]["backorigin-origin-key"] == f"assets/{IMAGES[3]}"

    # The origin changes two images: one grows, one keeps its size (a new generation).
    gcs_bucket.blob(f"site/assets/{IMAGES[7]}").upload_from_string(b"a different, longer image")
    same_size = payload(300 + len(IMAGES[8]), "changed")
    gcs_bucket.blob(f"site/assets/{IMAGES[8]}").upload_from_string(same_size)
    again = run_prewarm(environment, str(config), "--list", "media/")
    assert again.returncode == 1
    rows = rows_of(again.stdout)
    assert (rows["copied"], rows["exists"], rows["stale (not overwritten)"]) == (
        "0",
        str(len(IMAGES) - 2),
        "2",
    ), again.stdout
    old_size = 300 + len(IMAGES[7])
    assert f"media/{IMAGES[7]}  S3 holds {old_size} bytes; the origin lists 25" in again.stderr
    assert f"media/{IMAGES[8]}  S3 holds version" in again.stderr
    unchanged = read_all(s3_client, bucket, [f"media/{IMAGES[8]}"])
    assert unchanged[f"media/{IMAGES[8]}"] == payload(300 + len(IMAGES[8]), IMAGES[8])
    # The documents copied from their primary are not judged against the fallback's listing.
    docs = run_prewarm(environment, str(config), "--list", "docs/")
    assert rows_of(docs.stdout)["exists"] == str(len(DOCS)), docs.stdout


def test_list_with_a_queue_enqueues_viewer_keys(
    tmp_path: Path,
    fake_gcs: FakeGcsServer,
    gcs_bucket: Any,
    seaweedfs: Any,
    sqs: Any,
    queue_url: str,
    environment: dict[str, str],
) -> None:
    config = write_config(
        tmp_path / "backorigin.yaml",
        "unused-bucket",
        seaweedfs,
        fake_gcs,
        gcs_bucket,
        "http://127.0.0.1:9/",
    )
    result = run_prewarm(
        {**environment, **MOTO_ENV}, str(config), "--list", "media/img-01", "--queue-url", queue_url
    )
    assert result.returncode == 0, result.stdout + result.stderr
    expected = [f"media/{n}" for n in IMAGES if n.startswith("img-01")]
    assert rows_of(result.stdout)["enqueued"] == str(len(expected))
    assert sorted(queued_keys(sqs, queue_url)) == expected
