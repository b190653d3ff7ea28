"""The Python API of prewarm, called as a script or a notebook would: no CLI in between.

Real servers throughout: an HTTP origin, SeaweedFS as the bucket (and as an S3 origin that can
be listed), moto as the copy queue.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from prewarm_helpers import MOTO_ENV, payload, read_all, stored_keys

from backorigin.config import load_config
from backorigin.keys import Target
from backorigin.prewarm import Finding, Job, Outcome, prewarm
from backorigin.testing.http_origin import HttpOriginServer
from backorigin.transfer import CopyJob, CopyOutcome

KEYS = [f"api/{i:02d}.txt" for i in range(12)]
MISSING = "api/missing.txt"
INVALID = "api/../etc/passwd"


def config_text(bucket: str, seaweedfs: Any, origin: HttpOriginServer) -> str:
    return (
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        "origins:\n"
        f"  - {{name: web, type: http, base_url: '{origin.url}', retries: 0}}\n"
        "routes:\n"
        "  - {prefix: api/, origin: web}\n"
    )


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from backorigin.config import load_config
    from backorigin.prewarm import prewarm

    config = load_config(sys.argv[1])
    keys = sys.argv[2:]
    summary = prewarm(config, keys=keys, concurrency=4, failed_out=sys.argv[1] + ".retry")
    print(json.dumps(summary.as_dict()))
    """
)


def run_script(config: Path, keys: list[str], env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config), *keys],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def test_a_script_prewarms_a_key_list_and_reads_the_summary(
    tmp_path: Path,
    origin: HttpOriginServer,
    seaweedfs: Any,
    s3_client: Any,
    bucket: str,
    environment: dict[str, str],
) -> None:
    data = {key: payload(900 + i, key) for i, key in enumerate(KEYS)}
    for key, body in data.items():
        origin.put(key, body)
    config = tmp_path / "backorigin.yaml"
    config.write_text(config_text(bucket, seaweedfs, origin))

    first = run_script(config, [*KEYS, MISSING, INVALID], environment)
    assert first["mode"] == "local"
    assert first["outcomes"] == {"copied": len(KEYS), "not_found": 1, "invalid": 1}
    assert first["bytes_copied"] == sum(len(body) for body in data.values())
    assert first["ok"] is False  # a key was not found, one was invalid
    assert first["retry"] == 0  # neither is worth another run
    assert stored_keys(s3_client, bucket) == set(KEYS)
    assert read_all(s3_client, bucket, KEYS) == data

    again = run_script(config, KEYS, environment)
    assert again["outcomes"] == {"exists": len(KEYS)}
    assert again["ok"] is True
    assert again["bytes_copied"] == 0


def test_callbacks_see_each_job_and_outcome(
    origin: HttpOriginServer, seaweedfs: Any, s3_client: Any, bucket: str
) -> None:
    for key in KEYS[:3]:
        origin.put(key, key.encode())
    config = load_config(config_text(bucket, seaweedfs, origin))
    jobs: list[str] = []
    outcomes: dict[str, Outcome] = {}
    totals: list[int] = []

    summary = prewarm(
        config,
        "api/",
        keys=[*KEYS[:3], "elsewhere/x.txt", INVALID],
        concurrency=2,
        s3_client=s3_client,
        on_job=lambda job, target: jobs.append(job.key),
        on_outcome=lambda outcome: outcomes.setdefault(outcome.key, outcome),
        on_total=totals.append,
    )
    # Keys outside the prefix are not taken at all.
    assert sorted(jobs) == sorted([*KEYS[:3], INVALID])
    assert totals == [4]
    assert {k: o.status for k, o in outcomes.items()} == {
        **dict.fromkeys(KEYS[:3], CopyOutcome.COPIED),
        INVALID: Finding.INVALID,
    }
    assert summary.tally.counts[CopyOutcome.COPIED] == 3
    assert summary.tally.counts[Finding.INVALID] == 1
    assert not summary.ok
    assert summary.complete


def test_a_dry_run_routes_every_key_and_changes_nothing(
    origin: HttpOriginServer, seaweedfs: Any, s3_client: Any, bucket: str
) -> None:
    config = load_config(config_text(bucket, seaweedfs, origin))
    planned: list[tuple[str, Target | None]] = []
    rejected: list[str] = []

    summary = prewarm(
        config,
        keys=[KEYS[0], "no/route.txt", INVALID],
        dry_run=True,
        on_job=lambda job, target: planned.append((job.key, target)),
        on_reject=lambda key, reason: rejected.append(key),
    )
    assert planned == [(KEYS[0], Target("web", KEYS[0]))]
    assert sorted(rejected) == sorted(["no/route.txt", INVALID])
    assert (summary.mode, summary.planned, summary.rejected) == ("dry_run", 1, 2)
    assert not summary.ok
    assert stored_keys(s3_client, bucket) == set()


def test_the_queue_mode_sends_the_fetchers_copy_jobs(
    monkeypatch: pytest.MonkeyPatch,
    origin: HttpOriginServer,
    seaweedfs: Any,
    bucket: str,
    sqs: Any,
    queue_url: str,
) -> None:
    """Without an SQS client the API builds one from the queue URL (moto's: its endpoint)."""
    for name, value in MOTO_ENV.items():
        monkeypatch.setenv(name, value)
    config = load_config(config_text(bucket, seaweedfs, origin))
    batches: list[tuple[int, int]] = []

    summary = prewarm(
        config,
        keys=[*KEYS, INVALID],
        queue_url=queue_url,
        concurrency=2,
        on_sent=lambda sent, failed: batches.append((sent, failed)),
    )
    assert (summary.mode, summary.sent.sent, summary.sent.failed) == ("queue", len(KEYS), 0)
    assert summary.rejected == 1
    assert summary.rejected_examples[0][0] == INVALID
    assert sorted(batches) == [(2, 0), (10, 0)]
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not got.get("Messages"):
            break
        bodies += [m["Body"] for m in got["Messages"]]
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                for n, m in enumerate(got["Messages"])
            ],
        )
    assert sorted(CopyJob.from_json(body).key for body in bodies) == sorted(KEYS)


def test_a_listing_walks_the_origins_that_can_be_listed(
    monkeypatch: pytest.MonkeyPatch,
    origin: HttpOriginServer,
    seaweedfs: Any,
    s3_client: Any,
    bucket: str,
    s3_credentials: dict[str, str],
) -> None:
    """Without keys the origins are listed (here the route's S3 fallback); the HTTP primary
    cannot be, and the summary names it."""
    for name, value in s3_credentials.items():
        monkeypatch.setenv(name, value)
    old = f"old-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=old)
    for i in range(5):
        s3_client.put_object(Bucket=old, Key=f"site/img/{i}.png", Body=payload(300, str(i)))
    s3_client.put_object(Bucket=old, Key="site/other/z.txt", Body=b"no viewer key reaches it")
    config = load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        "origins:\n"
        f"  - {{name: web, type: http, base_url: '{origin.url}', retries: 0}}\n"
        f"  - {{name: old, type: s3, bucket: {old}, endpoint_url: '{seaweedfs.url}',"
        " region: us-east-1, prefix: site/}\n"
        "routes:\n"
        "  - prefix: media/\n"
        "    origin: web\n"
        "    fallback: [old]\n"
        "    rewrite: {strip_prefix: media/, add_prefix: img/}\n"
    )
    seen: list[Job] = []

    summary = prewarm(config, "media/", s3_client=s3_client, on_job=lambda j, t: seen.append(j))
    assert summary.tally.counts[CopyOutcome.COPIED] == 5, summary.as_dict()
    assert summary.listing is not None
    assert summary.listing.listed == 5
    assert list(summary.listing.not_listable) == ["web"]
    assert not summary.complete  # web's keys were not listed: give them with keys=
    assert {job.key for job in seen} == {f"media/{i}.png" for i in range(5)}
    assert all(job.origin == "old" and job.info is not None for job in seen)
    assert stored_keys(s3_client, bucket) == {f"media/{i}.png" for i in range(5)}
