"""Fixtures shared by the whole suite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backorigin.local.embedded_s3 import EmbeddedS3
from backorigin.plugins import adapter_plugins
from backorigin.testing.servers import Azurite, FakeGcsServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Let a test register adapters; the registry is re-read from entry points afterwards."""
    adapter_plugins.reset()
    yield
    adapter_plugins.reset()


# --- S3: one SeaweedFS per test session, with authentication on --------------------------------

S3_ACCESS_KEY = "AKIABACKORIGINTEST01"
S3_SECRET_KEY = "backorigin-test-secret-key-0123456789"
S3_PUBLIC_BUCKET = "public-legacy"
"""The one bucket of the session's SeaweedFS anyone may read (S3 origins with auth anonymous)."""


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[EmbeddedS3]:
    """A real S3 server (SeaweedFS) with SigV4 authentication on; only the bucket
    ``public-legacy`` (once created) can be read anonymously."""
    server = EmbeddedS3(
        access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY, anonymous_read=(S3_PUBLIC_BUCKET,)
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_client(seaweedfs: EmbeddedS3) -> Any:
    """A boto3 client for the session's SeaweedFS."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "s3",
        endpoint_url=seaweedfs.url,
        region_name="us-east-1",
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        config=BotoConfig(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
        ),
    )


@pytest.fixture
def bucket(s3_client: Any) -> str:
    """A fresh, empty bucket for one test."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def s3_credentials() -> dict[str, str]:
    """The session SeaweedFS's credentials as AWS environment variables."""
    return {
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's default chain pointed at the session's SeaweedFS credentials."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


# --- the other emulators, one of each per session ----------------------------------------------


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[FakeGcsServer]:
    """fake-gcs-server (in memory): GCS's JSON and XML APIs."""
    with FakeGcsServer() as server:
        yield server


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's Blob service (installed from npm by `make install`)."""
    with Azurite(root=ROOT) as server:
        yield server
