"""`backorigin status` and `backorigin reconcile` run as users run them, on each old store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from reconcile_helpers import Legacy, Setup, SetupFor

from backorigin.transfer import CopyOutcome

pytestmark = pytest.mark.usefixtures("s3_env")

SCRIPT = shutil.which("backorigin", path=str(Path(sys.executable).parent))


def run(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    assert SCRIPT, "the backorigin script is not installed next to the interpreter"
    return subprocess.run(
        [SCRIPT, *args],
        capture_output=True,
        text=True,
        env=setup.environ,
        timeout=120,
        check=False,
    )


def test_status_and_reconcile_commands(
    legacy: Legacy, setup: Setup, s3_client: Any, bucket: str
) -> None:
    for name in ("a", "b", "c"):
        legacy.put(f"{name}.txt", f"{name} one".encode())
        assert setup.engine.copy(f"{name}.txt").outcome is CopyOutcome.COPIED
    s3_client.put_object(Bucket=bucket, Key="app.txt", Body=b"the application's")
    legacy.put("b.txt", b"b two")
    legacy.delete("c.txt")
    legacy.put("d.txt", b"d one")
    config = str(setup.path)

    before = run(setup, "status", config, "--json")
    assert before.returncode == 1, before.stderr
    counts = json.loads(before.stdout)
    assert {k: v["objects"] for k, v in counts["classes"].items() if v["objects"]} == {
        "migrated": 1,
        "missing": 1,
        "stale": 1,
        "orphaned": 1,
        "application": 1,
    }
    assert counts["classes"]["missing"]["bytes"] == len(b"d one")
    assert counts["complete"] is False

    dry = run(setup, "reconcile", config, "--dry-run", "--deletes", "delete")
    assert dry.returncode == 0, dry.stderr
    lines = sorted(line.split("\t")[:2] for line in dry.stdout.splitlines() if "\t" in line)
    assert lines == [["copy", "d.txt"], ["delete", "c.txt"], ["refresh", "b.txt"]]
    assert run(setup, "status", config, "--json").returncode == 1  # nothing changed

    done = run(setup, "reconcile", config, "--deletes", "delete")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "refresh (1 stale)" in done.stdout

    after = run(setup, "status", config)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "complete" in after.stdout
    assert "100.0% of 3 origin object(s)" in after.stdout
    assert bytes(s3_client.get_object(Bucket=bucket, Key="app.txt")["Body"].read()) == (
        b"the application's"
    )


def test_status_exits_2_when_an_origin_cannot_be_listed(
    tmp_path: Path, bucket: str, seaweedfs: Any, s3_credentials: dict[str, str]
) -> None:
    import os

    config = tmp_path / "web.yaml"
    config.write_text(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        "origins:\n  - {name: web, type: http, base_url: 'http://127.0.0.1:9/'}\n"
    )
    env = {**os.environ, **s3_credentials}
    assert SCRIPT
    result = subprocess.run(
        [SCRIPT, "status", str(config)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "origin web was not listed" in result.stderr
    assert "--keys" in result.stderr


def test_reconcile_through_the_queue(
    fake_gcs: Any, setup_for: SetupFor, s3_client: Any, bucket: str
) -> None:
    import boto3
    from moto.server import ThreadedMotoServer
    from reconcile_helpers import gcs_origin

    legacy = gcs_origin(fake_gcs)
    setup = setup_for(legacy)
    legacy.put("stale", b"one")
    assert setup.engine.copy("stale").outcome is CopyOutcome.COPIED
    legacy.put("stale", b"two, longer")
    legacy.put("missing", b"new")
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
        queue = sqs.create_queue(QueueName="copy-cli")["QueueUrl"]
        result = run(setup, "reconcile", str(setup.path), "--queue-url", queue, "--json")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["results"]["copy"]["enqueued"] == 1
        assert summary["results"]["refresh"]["enqueued"] == 1
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    finally:
        server.stop()
    stale_etag = s3_client.head_object(Bucket=bucket, Key="stale")["ETag"]
    assert sorted(json.loads(m["Body"])["key"] for m in messages) == ["missing", "stale"]
    assert {"key": "stale", "replace": stale_etag} in [json.loads(m["Body"]) for m in messages]
    # Nothing was copied here: the fetchers do that.
    assert body_or_none(s3_client, bucket, "missing") is None


def body_or_none(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None
