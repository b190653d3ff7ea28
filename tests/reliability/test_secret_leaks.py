"""Secrets never leak: not into logs (any logger, DEBUG and up), exception messages or
tracebacks, nor into the baked config of a Lambda bundle.

Every origin type and auth mode that holds a secret runs for real, with canary secret values:
HTTP bearer, basic and custom headers against the local HTTP origin (which demands them), an
S3-compatible origin with an access key (SeaweedFS checks the signature) as a route's fallback
(CloudFront cannot reach a signing S3 origin through the edge, so the fetcher copies from it),
Azure with the account key, a SAS and a connection string (Azurite checks them), and GCS with
HMAC keys (fake-gcs).
Each flow runs through the copy engine, the edge function (origin-request signing, then
origin-response), ``LocalCloudFront`` end to end, and again with wrong credentials so that the
error paths run too. All the while the root logger and botocore, urllib3, azure, google and
aiohttp log at DEBUG into a capture, and stdout/stderr are captured.

Access key ids (S3's ``AKIA…``, GCS's ``GOOG1…``) are identifiers, not secrets: they appear in
every signed request's ``Authorization`` header, which botocore logs at DEBUG, so they are not
checked.
"""

from __future__ import annotations

import base64
import json
import logging
import traceback
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib3
from reliability_support import Lab

from backorigin.bundling import bundle
from backorigin.config import Config, SecretResolver, load_config
from backorigin.handlers import make_edge_handler
from backorigin.local import LocalCloudFront
from backorigin.testing.servers import AZURITE_ACCOUNT, AZURITE_KEY
from backorigin.transfer import CopyEngine, CopyOutcome

EVENTS = Path(__file__).resolve().parent.parent / "events"
LOGGERS = ("", "botocore", "boto3", "urllib3", "azure", "google", "aiohttp", "backorigin")
HTTP_TOKEN = "canary-bearer-7d1e88a0f3b2"
HTTP_PASSWORD = "canary-password-55b1e9"
HTTP_API_KEY = "canary-apikey-c0ffee1177"
GCS_SECRET = "canary-gcs-hmac-secret-9a9a4c"
WRONG = {
    "HTTP_TOKEN": "canary-wrong-token-4455aa",
    "HTTP_PASSWORD": "canary-wrong-password-66",
    "HTTP_API_KEY": "canary-wrong-apikey-77",
    "S3_SECRET": "canary-wrong-s3-secret-key-000000000000",
    "AZ_KEY": base64.b64encode(
        b"canary wrong azure account key, 64 bytes long ..............."
    ).decode(),
}
ORIGINS = ("bearer", "basic", "headers", "s3", "azkey", "azsas", "azconn", "gcs")
FALLBACK_ONLY = frozenset({"s3"})
"""Origins CloudFront cannot reach through the edge: a route's fallback, copied by the fetcher."""


class Capture(logging.Handler):
    """Every log record, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception as exc:  # a record that cannot even be formatted
            self.lines.append(f"unformattable record {record.msg!r} {record.args!r}: {exc}")


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    root = logging.getLogger()
    root.addHandler(handler)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


class World:
    """Every origin with a secret, its objects, the config and the secret values."""

    def __init__(self, lab: Lab, seaweedfs: Any, azurite: Any, fake_gcs: Any) -> None:
        from azure.storage.blob import (
            BlobServiceClient,
            ContainerSasPermissions,
            generate_container_sas,
        )
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        self.lab = lab
        tag = uuid.uuid4().hex[:8]
        self.body = f"secret-flow payload {tag}".encode() * 50
        # HTTP: the origin refuses requests without the exact credentials.
        basic = base64.b64encode(f"reader:{HTTP_PASSWORD}".encode()).decode()
        demands = {
            "bearer": {"Authorization": f"Bearer {HTTP_TOKEN}"},
            "basic": {"Authorization": f"Basic {basic}"},
            "headers": {"X-Api-Key": HTTP_API_KEY},
        }
        for name, demanded in demands.items():
            lab.origin.put(f"{name}/{tag}/obj.bin", self.body)
            lab.origin.require_headers(f"{name}/{tag}/obj.bin", demanded)
        # S3-compatible: another bucket on SeaweedFS, which checks SigV4 signatures.
        self.legacy = f"legacy-{tag}"
        lab.s3.create_bucket(Bucket=self.legacy)
        lab.s3.put_object(Bucket=self.legacy, Key=f"{tag}/obj.bin", Body=self.body)
        # Azure: a private container on Azurite, which checks Shared Key and SAS signatures.
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        self.container = f"secrets-{tag}"
        service.create_container(self.container)
        service.get_blob_client(self.container, f"{tag}/obj.bin").upload_blob(self.body)
        now = datetime.now(UTC)
        sas = generate_container_sas(
            AZURITE_ACCOUNT,
            self.container,
            account_key=AZURITE_KEY,
            permission=ContainerSasPermissions(read=True, list=True),
            start=now - timedelta(hours=1),
            expiry=now + timedelta(hours=2),
        )
        # GCS: fake-gcs-server (it does not check HMAC signatures; the signing code runs).
        gcs = storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": fake_gcs.url},
        )
        self.gcs_bucket = f"secrets-{tag}"
        gcs.create_bucket(self.gcs_bucket).blob(f"{tag}/obj.bin").upload_from_string(self.body)
        self.tag = tag
        self.environ = {
            "HTTP_TOKEN": HTTP_TOKEN,
            "HTTP_PASSWORD": HTTP_PASSWORD,
            "HTTP_API_KEY": HTTP_API_KEY,
            "S3_ID": lab.access_key,
            "S3_SECRET": lab.secret_key,
            "AZ_KEY": AZURITE_KEY,
            "AZ_SAS": sas,
            "AZ_CONN": azurite.connection_string,
            "GCS_ID": "GOOG1ECANARYACCESSID000",
            "GCS_SECRET": GCS_SECRET,
        }
        self.text = self._config_text(seaweedfs.url, azurite.account_url, fake_gcs.url)
        self.config: Config = load_config(self.text)
        sig = urllib.parse.parse_qs(sas)["sig"][0]
        values = {
            HTTP_TOKEN,
            HTTP_PASSWORD,
            basic,
            HTTP_API_KEY,
            lab.secret_key,
            AZURITE_KEY,
            sas,
            sig,
            GCS_SECRET,
            *WRONG.values(),
            base64.b64encode(f"reader:{WRONG['HTTP_PASSWORD']}".encode()).decode(),
        }
        # Also as they would look percent-encoded in a URL or a log of one.
        self.secrets = values | {urllib.parse.quote(v, safe="") for v in values}

    def _config_text(self, s3_url: str, azure_url: str, gcs_url: str) -> str:
        tag, lab = self.tag, self.lab

        def http(name: str, auth: str) -> str:
            return (
                f"  - {{name: {name}, type: http, base_url: '{lab.origin.url}{name}/{tag}/', "
                f"retries: 0, auth: {auth}}}\n"
            )

        def azure(name: str, auth: str) -> str:
            return (
                f"  - {{name: {name}, type: azure, account_url: '{azure_url}', container: "
                f"{self.container}, prefix: '{tag}/', retries: 0, auth: {auth}}}\n"
            )

        def route(name: str) -> str:
            if name in FALLBACK_ONLY:  # served at the edge by an empty origin, copied from this
                return (
                    f"  - {{prefix: '{name}/', origin: empty, fallback: [{name}], "
                    f"rewrite: {{strip_prefix: '{name}/'}}}}\n"
                )
            return (
                f"  - {{prefix: '{name}/', origin: {name}, rewrite: {{strip_prefix: '{name}/'}}}}\n"
            )

        routes = "".join(route(name) for name in ORIGINS)
        return (
            f"bucket: {{name: {lab.bucket}, endpoint_url: '{s3_url}', region: us-east-1}}\n"
            "origins:\n"
            + http("bearer", "{mode: bearer, token: {secret: {env: HTTP_TOKEN}}}")
            + http(
                "basic",
                "{mode: basic, username: reader, password: {secret: {env: HTTP_PASSWORD}}}",
            )
            + http(
                "headers", "{mode: headers, headers: {X-Api-Key: {secret: {env: HTTP_API_KEY}}}}"
            )
            + http("empty", "{mode: none}")
            + f"  - {{name: s3, type: s3, bucket: {self.legacy}, region: us-east-1, "
            f"endpoint_url: '{s3_url}', prefix: '{tag}/', retries: 0, auth: {{mode: access_key, "
            "access_key_id: {secret: {env: S3_ID}}, "
            "secret_access_key: {secret: {env: S3_SECRET}}}}\n"
            + azure("azkey", "{mode: account_key, account_key: {secret: {env: AZ_KEY}}}")
            + azure("azsas", "{mode: sas, token: {secret: {env: AZ_SAS}}}")
            + azure(
                "azconn",
                "{mode: connection_string, connection_string: {secret: {env: AZ_CONN}}}",
            )
            + f"  - {{name: gcs, type: gcs, bucket: {self.gcs_bucket}, endpoint_url: '{gcs_url}', "
            f"prefix: '{tag}/', retries: 0, auth: {{mode: hmac, access_id: {{secret: "
            "{env: GCS_ID}}, secret: {secret: {env: GCS_SECRET}}}}\n"
            "routes:\n" + routes + "copy: {part_size: 5MiB, concurrency: 2}\n"
        )

    def object_keys(self) -> list[str]:
        return [f"{name}/obj.bin" for name in ORIGINS]

    def edge_signed_keys(self) -> list[str]:
        """Keys whose request CloudFront sends to an origin that needs a secret."""
        return [f"{name}/obj.bin" for name in ORIGINS if name not in FALLBACK_ONLY]

    def resolver(self, *, wrong: bool = False) -> SecretResolver:
        environ = dict(self.environ)
        if wrong:
            environ.update(WRONG)
            environ["AZ_SAS"] = self.environ["AZ_SAS"].replace("sig=", "sig=A")
            environ["AZ_CONN"] = self.environ["AZ_CONN"].replace(AZURITE_KEY, WRONG["AZ_KEY"])
        return SecretResolver(environ=environ, ttl=0)

    def leaks(self, texts: list[str]) -> list[str]:
        found = []
        for text in texts:
            for secret in self.secrets:
                if secret and secret in text:
                    found.append(f"{secret[:6]}… in: {text[:300]}")
        return found


@pytest.fixture(scope="module")
def world(lab: Lab, seaweedfs: Any, azurite: Any, fake_gcs: Any) -> World:
    return World(lab, seaweedfs, azurite, fake_gcs)


def exception_texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def edge_event(name: str, uri: str, key_header: str | None = None) -> dict[str, Any]:
    evt: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    request = evt["Records"][0]["cf"]["request"]
    request["uri"] = uri
    if key_header is not None:
        request["headers"]["x-backorigin-key"] = [{"key": "X-Backorigin-Key", "value": key_header}]
    return evt


class Sink:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_message(self, *, QueueUrl: str, MessageBody: str) -> dict[str, str]:  # noqa: N803
        self.sent.append(MessageBody)
        return {"MessageId": "1"}


def test_copies_leak_no_secret(
    world: World, capture: Capture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every origin copied with the right secrets, then every one refused with wrong ones."""
    texts: list[str] = []
    for wrong in (False, True):
        engine = CopyEngine(
            world.config, s3_client=world.lab.direct, secrets=world.resolver(wrong=wrong)
        )
        try:
            for key in world.object_keys():
                result = engine.copy(key)
                texts += [str(result), result.reason or ""]
                if not wrong:
                    assert result.outcome is CopyOutcome.COPIED, (key, result)
                    world.lab.s3.delete_object(Bucket=world.lab.bucket, Key=key)
                elif key.startswith("gcs/"):
                    assert result.outcome is CopyOutcome.COPIED  # fake-gcs checks no signature
                    world.lab.s3.delete_object(Bucket=world.lab.bucket, Key=key)
                else:
                    assert result.outcome is CopyOutcome.FAILED, (key, result)
                # The adapters' own errors, raised and formatted with their tracebacks.
                for target in engine.router.route(key).targets:
                    try:
                        engine.adapter(target.origin).read_bytes(target.key + ".missing")
                    except Exception as exc:
                        texts += exception_texts(exc)
        finally:
            engine.close()
    out, err = capfd.readouterr()
    assert len(capture.lines) > 50, "DEBUG logging did not reach the capture"
    leaks = world.leaks([*texts, *capture.lines, out, err])
    assert leaks == [], "\n".join(leaks[:5])


def test_the_edge_leaks_no_secret(
    world: World, capture: Capture, capfd: pytest.CaptureFixture[str]
) -> None:
    """origin-request signs for every origin (the signed request itself carries credentials
    to the origin, by design); origin-response enqueues. Logs and errors stay clean."""
    texts: list[str] = []
    for wrong in (False, True):
        sink = Sink()
        handler = make_edge_handler(
            world.config,
            queue_url="local://q",
            sqs_client=sink,
            secrets=world.resolver(wrong=wrong),
        )
        for key in world.object_keys():
            signed = handler(edge_event("origin-request-secondary", "/" + key), None)
            assert "status" not in signed, signed
            response = handler(
                edge_event("origin-response-secondary-200", "/" + key, key_header=key), None
            )
            assert response["status"] == "200"
        assert len(sink.sent) == len(world.object_keys())
    # An unreadable secret: a 503 at the edge, logged without any value.
    broken = make_edge_handler(
        world.config, queue_url="local://q", sqs_client=Sink(), secrets=SecretResolver(environ={})
    )
    for key in world.edge_signed_keys():
        answer = broken(edge_event("origin-request-secondary", "/" + key), None)
        assert answer["status"] == "503"
        texts.append(json.dumps(answer))
    out, err = capfd.readouterr()
    leaks = world.leaks([*texts, *capture.lines, out, err])
    assert leaks == [], "\n".join(leaks[:5])


def test_serve_leaks_no_secret(
    world: World, capture: Capture, capfd: pytest.CaptureFixture[str]
) -> None:
    """LocalCloudFront end to end: a miss per origin through the signed edge request, the copy,
    then the hit; and every origin again with wrong secrets."""
    for wrong in (False, True):
        server = LocalCloudFront(
            world.config,
            s3_client=world.lab.direct,
            port=0,
            secrets=world.resolver(wrong=wrong),
            visibility_timeout=0.2,
        )
        with server:
            for key in world.object_keys():
                response = urllib3.request("GET", f"{server.url}/{key}", retries=False, timeout=30)
                if key.split("/")[0] in FALLBACK_ONLY:
                    # The routed origin has nothing: the viewer's first answer is its 404,
                    # and the copy job tries the fallback.
                    assert response.status == 404, (key, response.status)
                elif not wrong or key.startswith("gcs/"):
                    assert (response.status, response.data) == (200, world.body), key
                else:
                    assert response.status in (401, 403), (key, response.status)
            assert server.queue.join(timeout=60)
            for name in FALLBACK_ONLY:
                key = f"{name}/obj.bin"
                response = urllib3.request("GET", f"{server.url}/{key}", retries=False, timeout=30)
                if wrong:  # the fallback refused the copy: still not in the bucket
                    assert response.status == 404, (key, response.status)
                else:
                    assert (response.status, response.data) == (200, world.body), key
        for key in world.object_keys():
            world.lab.s3.delete_object(Bucket=world.lab.bucket, Key=key)
    out, err = capfd.readouterr()
    leaks = world.leaks([*capture.lines, out, err])
    assert leaks == [], "\n".join(leaks[:5])


@pytest.mark.parametrize("role", ["edge", "fetcher"])
def test_bundles_bake_references_not_values(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, role: str
) -> None:
    """The baked config holds secret references only, even with every value resolvable."""
    for name, value in world.environ.items():
        monkeypatch.setenv(name, value)
    target = bundle(
        world.config,
        tmp_path / role,
        role=role,  # type: ignore[arg-type]
        install=False,
        queue_name="backorigin-copy",
        queue_region="us-east-1",
    )
    texts = [
        path.read_text(errors="ignore")
        for path in target.rglob("*")
        if path.is_file() and path.suffix in (".json", ".py", ".txt", ".yaml", ".cfg")
    ]
    assert any("aws_secretsmanager" in t or '"env"' in t for t in texts)
    leaks = world.leaks(texts)
    assert leaks == [], "\n".join(leaks[:5])
    config = json.loads((target / "backorigin" / "_baked" / "config.json").read_text())
    assert config["origins"][0]["auth"]["token"]["secret"]["env"] == "HTTP_TOKEN"
