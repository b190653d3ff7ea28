"""prewarm(), status() and reconcile() check the bucket once, before any key: a bucket that
does not exist or credentials S3 refuses give one clear error, not one failure per key.

Real servers: the session's SeaweedFS with authentication on, an HTTP origin.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backorigin.config import Config, load_config
from backorigin.prewarm import BucketUnusable, prewarm, reconcile, status
from backorigin.prewarm.status import bucket_of
from backorigin.testing.http_origin import HttpOriginServer
from backorigin.transfer.access import Problem
from backorigin.transfer.bucket import make_s3_client

KEYS = [f"access/{n}.txt" for n in range(10)]


def config_for(bucket: str, seaweedfs: Any, origin: HttpOriginServer) -> Config:
    return load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        f"origins: [{{name: web, type: http, base_url: '{origin.url}', retries: 0}}]\n"
    )


def run_prewarm(config: Config, client: Any, tmp_path: Path) -> Any:
    failed_out = tmp_path / "retry.txt"
    return prewarm(config, keys=KEYS, concurrency=4, s3_client=client, failed_out=failed_out)


def run_status(config: Config, client: Any, tmp_path: Path) -> Any:
    return status(config, keys=KEYS, concurrency=4, bucket=bucket_of(config, client))


def run_reconcile(config: Config, client: Any, tmp_path: Path) -> Any:
    return reconcile(config, keys=KEYS, concurrency=4, deletes="delete", s3_client=client)


RUNS = [run_prewarm, run_status, run_reconcile]


@pytest.fixture
def client_for(s3_credentials: dict[str, str]) -> Callable[..., Any]:
    """An S3 client for a config, with the session's access key and the given secret."""

    def make(config: Config, secret_key: str = s3_credentials["AWS_SECRET_ACCESS_KEY"]) -> Any:
        # Explicit credentials: boto3's default session resolves the environment's only once.
        return make_s3_client(
            config.bucket,
            aws_access_key_id=s3_credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=secret_key,
        )

    return make


@pytest.fixture
def populated(origin: HttpOriginServer) -> HttpOriginServer:
    for key in KEYS:
        origin.put(key, key.encode())
    origin.reset_counters()
    return origin


@pytest.mark.parametrize("run", RUNS, ids=lambda run: run.__name__)
def test_a_bucket_that_does_not_exist_fails_once_before_any_key(
    run: Callable[[Config, Any, Path], Any],
    tmp_path: Path,
    seaweedfs: Any,
    populated: HttpOriginServer,
    client_for: Callable[..., Any],
) -> None:
    name = f"absent-{uuid.uuid4().hex[:12]}"
    config = config_for(name, seaweedfs, populated)
    with pytest.raises(BucketUnusable) as raised:
        run(config, client_for(config), tmp_path)
    assert raised.value.problem is Problem.NO_SUCH_BUCKET
    assert str(raised.value) == (
        f"cannot use bucket {name} at {seaweedfs.url}: the bucket does not exist"
    )
    assert populated.total_requests() == 0  # no key was tried
    assert not (tmp_path / "retry.txt").exists()


@pytest.mark.parametrize("run", RUNS, ids=lambda run: run.__name__)
def test_credentials_s3_refuses_fail_once_before_any_key(
    run: Callable[[Config, Any, Path], Any],
    tmp_path: Path,
    seaweedfs: Any,
    bucket: str,
    populated: HttpOriginServer,
    client_for: Callable[..., Any],
) -> None:
    config = config_for(bucket, seaweedfs, populated)
    with pytest.raises(BucketUnusable) as raised:
        run(config, client_for(config, "not-the-secret-key"), tmp_path)
    assert raised.value.problem is Problem.ACCESS_DENIED
    assert str(raised.value).startswith(
        f"cannot use bucket {bucket} at {seaweedfs.url}: access is denied (HTTP 403)"
    )
    assert populated.total_requests() == 0


SCRIPT = textwrap.dedent(
    """
    import sys
    from backorigin.config import load_config
    from backorigin.prewarm import BucketUnusable, prewarm, reconcile, status

    config = load_config(sys.argv[1])
    keys = sys.argv[2:]
    for run in (prewarm, status, reconcile):
        try:
            run(config, keys=keys)
        except BucketUnusable as exc:
            print(run.__name__, exc.problem.value, exc, sep="\\t")
    """
)


def test_a_script_without_credentials_hears_it_once_per_call(
    tmp_path: Path, seaweedfs: Any, bucket: str, populated: HttpOriginServer
) -> None:
    config = tmp_path / "backorigin.yaml"
    config.write_text(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        f"origins: [{{name: web, type: http, base_url: '{populated.url}', retries: 0}}]\n"
    )
    # boto3's chain finds nothing here (and asks no metadata service).
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        HOME=str(tmp_path),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config), *KEYS],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [line[:2] for line in lines] == [
        ["prewarm", "no_credentials"],
        ["status", "no_credentials"],
        ["reconcile", "no_credentials"],
    ]
    for *_, message in lines:
        assert message == (
            f"cannot use bucket {bucket} at {seaweedfs.url}: no AWS credentials were found "
            "(set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    assert populated.total_requests() == 0


def test_a_usable_bucket_passes_the_check_and_the_run_goes_on(
    tmp_path: Path,
    seaweedfs: Any,
    bucket: str,
    populated: HttpOriginServer,
    s3_client: Any,
    client_for: Callable[..., Any],
) -> None:
    config = config_for(bucket, seaweedfs, populated)
    summary = run_prewarm(config, client_for(config), tmp_path)
    assert summary.ok
    stored = s3_client.list_objects_v2(Bucket=bucket, Prefix="access/").get("Contents", [])
    assert sorted(item["Key"] for item in stored) == sorted(KEYS)
    report = run_status(config, client_for(config), tmp_path)
    assert report.complete
