"""One endpoint rule for both faces of an adapter: the config's endpoint_url, else the SDK's
environment variable; `serve` sends viewers where the data plane reads."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import urllib3

from backorigin.adapters import apply_environment_endpoints, create_adapter
from backorigin.config import load_config
from backorigin.errors import ConfigError
from backorigin.testing.servers import free_port

CONFIG = """\
bucket: {name: media-new, region: eu-west-1}
origins:
  - {name: pics, type: gcs, bucket: old-pics}
  - {name: files, type: s3, bucket: old-files, region: eu-west-1, auth: {mode: anonymous}}
  - {name: web, type: http, base_url: 'https://old.example.com/'}
"""


def test_the_environment_fills_in_endpoints_the_config_does_not_set() -> None:
    config = load_config(CONFIG)
    environ = {
        "STORAGE_EMULATOR_HOST": "127.0.0.1:4443",  # a bare host:port means http
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:8333",  # the service's own wins
    }
    changed, notes = apply_environment_endpoints(config, environ)
    pics, files, web = changed.origins
    assert getattr(pics, "endpoint_url", None) == "http://127.0.0.1:4443"
    assert getattr(files, "endpoint_url", None) == "http://127.0.0.1:8333"
    assert web == config.origins[2]
    assert notes == [
        "origin 'pics': endpoint http://127.0.0.1:4443 (from STORAGE_EMULATOR_HOST)",
        "origin 'files': endpoint http://127.0.0.1:8333 (from AWS_ENDPOINT_URL_S3)",
    ]
    # Both faces now agree: the edge face is the emulator too.
    spec = create_adapter(pics).cloudfront_origin()
    assert (spec.domain, spec.port, spec.protocol, spec.path) == (
        "127.0.0.1",
        4443,
        "http",
        "/old-pics",
    )
    spec = create_adapter(files).cloudfront_origin()
    assert (spec.domain, spec.port) == ("127.0.0.1", 8333)


def test_the_config_wins_and_botocore_s_opt_out_is_honoured() -> None:
    config = load_config(
        CONFIG.replace("bucket: old-pics}", "bucket: old-pics, endpoint_url: 'http://gcs.test/'}")
    )
    environ = {
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
    }
    changed, notes = apply_environment_endpoints(config, environ)
    assert changed is config
    assert notes == []


def test_a_variable_that_is_not_a_url_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as error:
        apply_environment_endpoints(load_config(CONFIG), {"AWS_ENDPOINT_URL": "ftp://x"})
    (issue,) = error.value.issues
    assert issue.path == "origins[1].endpoint_url"
    assert "AWS_ENDPOINT_URL" in issue.message


def test_serve_sends_viewers_to_the_emulator_storage_emulator_host_names(
    tmp_path: Path,
    fake_gcs: Any,
    seaweedfs: Any,
    s3_client: Any,
    bucket: str,
    s3_credentials: dict[str, str],
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    legacy = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs.url},
    ).create_bucket(f"legacy-{uuid.uuid4().hex[:8]}")
    legacy.blob("img/cat.jpg").upload_from_string(b"meow" * 1000, content_type="image/jpeg")
    config = tmp_path / "backorigin.yaml"
    config.write_text(  # no endpoint_url for the origin: only the environment names fake-gcs
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        f"origins:\n  - {{name: old, type: gcs, bucket: {legacy.name}}}\n"
    )
    env = {**os.environ, **s3_credentials, "STORAGE_EMULATOR_HOST": fake_gcs.url}
    port = free_port()
    command = [sys.executable, "-m", "backorigin.cli", "serve", str(config), "--port", str(port)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    said: list[str] = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            said.append(line)
            if "backorigin serving" in line:
                break
        else:
            pytest.fail(f"serve exited with {process.wait()}: {''.join(said)}")
        assert f"origin 'old': endpoint {fake_gcs.url} (from STORAGE_EMULATOR_HOST)\n" in said
        url = f"http://127.0.0.1:{port}/img/cat.jpg"
        miss = urllib3.request("GET", url, retries=urllib3.Retry(connect=20, backoff_factor=0.1))
        assert (miss.status, miss.data) == (200, b"meow" * 1000)
        assert miss.headers["x-backorigin"] == "origin"
        waiter = s3_client.get_waiter("object_exists")
        waiter.wait(Bucket=bucket, Key="img/cat.jpg", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        copied = s3_client.get_object(Bucket=bucket, Key="img/cat.jpg")
        assert copied["Body"].read() == b"meow" * 1000
    finally:
        process.terminate()
        process.wait(timeout=60)
