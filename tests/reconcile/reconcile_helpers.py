"""Helpers of the status and reconcile tests: an old store on each emulator, a config for it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backorigin.config import Config, SecretResolver, load_config
from backorigin.transfer import CopyEngine


@dataclass
class Legacy:
    """An old store on an emulator: its config entry and a way to change what it holds."""

    kind: str
    origin_yaml: str
    put: Callable[[str, bytes], None]
    delete: Callable[[str], None]
    environ: dict[str, str] = field(default_factory=dict)
    # Origins and routes the config needs besides the old store itself.
    more_origins: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)


def gcs_origin(fake_gcs: Any) -> Legacy:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs.url},
    )
    name = f"legacy-{uuid.uuid4().hex[:8]}"
    bucket = client.create_bucket(name)
    return Legacy(
        "gcs",
        f"{{name: old, type: gcs, bucket: {name}, endpoint_url: '{fake_gcs.url}',"
        " auth: {mode: anonymous}}",
        lambda key, data: bucket.blob(key).upload_from_string(data),
        lambda key: bucket.blob(key).delete(),
    )


def azure_origin(azurite: Any) -> Legacy:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = f"legacy-{uuid.uuid4().hex[:8]}"
    service.create_container(container)
    return Legacy(
        "azure",
        f"{{name: old, type: azure, account_url: '{azurite.account_url}', container: {container},"
        " auth: {mode: connection_string, connection_string: {secret: {env: AZ_CONN}}}}",
        lambda key, data: service.get_blob_client(container, key).upload_blob(data, overwrite=True),
        lambda key: service.get_blob_client(container, key).delete_blob(),
        {"AZ_CONN": azurite.connection_string},
    )


def s3_origin(
    seaweedfs: Any, s3_client: Any, s3_credentials: dict[str, str], fake_gcs: Any
) -> Legacy:
    """A private S3-compatible bucket. The edge cannot sign for it (CloudFront adds X-Amz-Cf-Id
    after signing), so it is a route's fallback behind a primary that lacks these keys (an
    empty GCS bucket): the copy path reads it with its keys, as in production."""
    name = f"legacy-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=name)
    front = gcs_origin(fake_gcs)
    return Legacy(
        "s3",
        f"{{name: old, type: s3, bucket: {name}, region: us-east-1, endpoint_url: "
        f"'{seaweedfs.url}', auth: {{mode: access_key, access_key_id: {{secret: {{env: K}}}}, "
        "secret_access_key: {secret: {env: S}}}}",
        lambda key, data: s3_client.put_object(Bucket=name, Key=key, Body=data),
        lambda key: s3_client.delete_object(Bucket=name, Key=key),
        {"K": s3_credentials["AWS_ACCESS_KEY_ID"], "S": s3_credentials["AWS_SECRET_ACCESS_KEY"]},
        more_origins=[front.origin_yaml.replace("name: old", "name: front")],
        routes=["{prefix: '', origin: front, fallback: [old]}"],
    )


def config_text(legacy: Legacy, bucket: str, seaweedfs: Any, extra: str = "") -> str:
    origins = "".join(f"  - {o}\n" for o in [legacy.origin_yaml, *legacy.more_origins])
    routes = "routes:\n" + "".join(f"  - {r}\n" for r in legacy.routes) if legacy.routes else ""
    return (
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        f"origins:\n{origins}{routes}{extra}"
    )


@dataclass
class Setup:
    """A config for one old store and one bucket, and a copy engine for it."""

    config: Config
    path: Path
    engine: CopyEngine
    environ: dict[str, str]


SetupFor = Callable[..., Setup]
"""The ``setup_for`` fixture: ``setup_for(legacy, extra="")`` -> :class:`Setup`."""


def make_setup(
    legacy: Legacy,
    bucket: str,
    seaweedfs: Any,
    s3_client: Any,
    s3_credentials: dict[str, str],
    tmp_path: Path,
    extra: str = "",
) -> Setup:
    text = config_text(legacy, bucket, seaweedfs, extra)
    path = tmp_path / "backorigin.yaml"
    path.write_text(text)
    config = load_config(text)
    engine = CopyEngine(config, s3_client=s3_client, secrets=SecretResolver(environ=legacy.environ))
    environ = {**os.environ, **s3_credentials, **legacy.environ}
    return Setup(config, path, engine, environ)
