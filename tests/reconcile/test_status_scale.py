"""status streams: its state does not grow with the number of objects, and keys come in order.

A real origin (fake-gcs-server) holds a few thousand tiny objects behind two routes whose
rewrites interleave in viewer-key order; the merge is instrumented (entries it buffers, HEADs
in flight) rather than timed or measured by RSS.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from reconcile_helpers import Legacy, SetupFor, s3_origin

from backorigin.config import load_config
from backorigin.prewarm import Entry, OrderedWalk, State, Survey
from backorigin.prewarm.ordered import plan_streams
from backorigin.transfer import CopyEngine

pytestmark = pytest.mark.usefixtures("s3_env")

IMAGES = 1500
DOCS = 500
RUN = 256  # entries sorted in memory per listing before a run is spilled


def test_the_merge_holds_one_entry_per_listing_whatever_the_object_count(
    fake_gcs: Any, bucket: str, seaweedfs: Any, s3_client: Any
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs.url},
    )
    gcs = client.create_bucket(f"scale-{uuid.uuid4().hex[:8]}")
    names = [f"assets/img-{i:05d}.png" for i in range(IMAGES)]
    names += [f"docs/d-{i:05d}.txt" for i in range(DOCS)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: gcs.blob(n).upload_from_string(n.encode()), names))
    config = load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        f"origins:\n  - {{name: store, type: gcs, bucket: {gcs.name},"
        f" endpoint_url: '{fake_gcs.url}', auth: {{mode: anonymous}}}}\n"
        "routes:\n"
        "  - prefix: media/\n"
        "    origin: store\n"
        "    rewrite: {strip_prefix: media/, add_prefix: assets/}\n"
        "  - {prefix: '', origin: store}\n"
    )
    # Every image is reachable twice (media/… through the rewrite, assets/… as it is), so the
    # two listings interleave: assets/… < docs/… < media/….
    streams = plan_streams(config)
    assert len(streams) == 2
    # Half of the viewer keys are already in the bucket (written there, same sizes).
    present = [f"media/{n.removeprefix('assets/')}" for n in names[: IMAGES // 2]]
    present += names[IMAGES : IMAGES + DOCS // 2]
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda key: s3_client.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=("assets/" + key.removeprefix("media/")).encode()
                    if key.startswith("media/")
                    else key.encode(),
                ),
                present,
            )
        )
    engine = CopyEngine(config, s3_client=s3_client)
    survey = Survey(
        config,
        bucket=engine.bucket,
        adapter=engine.adapter,
        concurrency=4,
        run_size=RUN,
    )
    # The origins' side alone: viewer keys in order, each once, one entry buffered per listing.
    walk = OrderedWalk(config, engine.adapter, run_size=RUN)
    walked = [job.key for job in walk]
    total = 2 * IMAGES + DOCS
    assert len(walked) == total
    assert walked == sorted(set(walked))
    assert walk.max_buffered <= len(streams)
    assert walk.listed == IMAGES + DOCS  # each origin object counted once
    # The listings were sorted in runs spilled to disk: in memory, at most a run per listing
    # and one entry per spilled run.
    assert walk.sort.spilled == IMAGES // RUN + (IMAGES + DOCS) // RUN
    assert walk.sort.max_held <= len(streams) * RUN + walk.sort.spilled

    # The whole comparison: every key classified once, HEADs in flight bounded.
    seen: list[str] = []
    report = survey.run(lambda entry: seen.append(entry.key))
    assert report.error is None
    assert report.objects[State.MIGRATED] == len(present)
    assert report.objects[State.MISSING] == total - len(present)
    assert sorted(seen) == walked
    assert survey.walk is not None
    assert survey.walk.max_buffered <= len(streams)
    assert survey.walk.sort.max_held <= (len(streams) + 1) * RUN + survey.walk.sort.spilled
    assert survey.max_inflight <= 2 * 4


def test_candidates_cost_a_head_and_the_rest_none(
    s3_legacy: Legacy, setup_for: SetupFor, s3_client: Any, bucket: str
) -> None:
    # Origin and bucket on the same S3 server: one clock and one time resolution, so an
    # object copied after its last change is not in doubt however quickly the test runs.
    setup = setup_for(s3_legacy)
    for name in ("same", "resized", "app-only"):
        s3_legacy.put(name, b"origin")
    for name in ("same", "resized"):
        setup.engine.copy(name)
    s3_legacy.put("resized", b"origin, longer now")
    s3_legacy.delete("app-only")
    s3_client.put_object(Bucket=bucket, Key="app-only", Body=b"app")
    entries: list[Entry] = []
    survey = Survey(
        setup.config,
        bucket=setup.engine.bucket,
        adapter=setup.engine.adapter,
        recent=timedelta(0),
    )
    report = survey.run(entries.append)
    by_key = {e.key: e.state for e in entries}
    assert by_key == {
        "same": State.MIGRATED,
        "resized": State.STALE,
        "app-only": State.APPLICATION,
    }
    assert report.bucket_heads == 2  # the resized copy, and the bucket-only object


@pytest.fixture
def s3_legacy(
    seaweedfs: Any, s3_client: Any, s3_credentials: dict[str, str], fake_gcs: Any
) -> Legacy:
    """An old store on the S3-compatible emulator (a route's fallback)."""
    return s3_origin(seaweedfs, s3_client, s3_credentials, fake_gcs)
