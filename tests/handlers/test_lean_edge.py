"""The bundled edge function's cold paths load only what they need (checked in sys.modules).

A request to the S3 primary loads no pydantic, YAML, config models, CloudFront rules or SDK; a
miss on an origin reached without signing routes from the baked plan and sends its copy job to
SQS (moto's server) without boto3; a miss on an origin that signs from its adapter's edge
recipe (a bearer token from the environment or from Secrets Manager, an Azure SAS made from
an account key, a GCS URL signed with a service account's key) loads no config models,
adapter or SDK either, only the rules on which headers it must leave alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from moto.server import ThreadedMotoServer

from backorigin.bundling import bundle
from backorigin.config import load_config
from backorigin.testing.service_account import make_service_account_key

EVENTS = Path(__file__).resolve().parent.parent / "events"
CONFIG = """\
bucket: {name: media-new, region: eu-west-1}
origins:
  - {name: legacy, type: gcs, bucket: old-media}
  - name: web
    type: http
    base_url: https://old.example.com/static/
    auth: {mode: bearer, token: {secret: {env: OLD_SITE_TOKEN}}}
  - name: vault
    type: http
    base_url: https://vault.example.com/
    auth: {mode: bearer, token: {secret: {aws_secretsmanager: edge-token, key: token}}}
  - name: blob
    type: azure
    account_url: https://acct.blob.core.windows.net
    container: cont
    auth: {mode: account_key, account_key: {secret: {env: AZURE_ACCOUNT_KEY}}}
  - name: private
    type: gcs
    bucket: private-media
    auth: {mode: service_account, credentials: {secret: {env: GCS_SA_KEY}}}
routes:
  - {prefix: images/, origin: web, fallback: [legacy]}
  - {prefix: vault/, origin: vault}
  - {prefix: blob/, origin: blob}
  - {prefix: private/, origin: private}
  - {prefix: "", origin: legacy}
"""
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
SERVICE_ACCOUNT_KEY = make_service_account_key("lean@test.iam.gserviceaccount.com").json
HEAVY = ("pydantic", "pydantic_core", "yaml", "boto3", "botocore", "urllib3", "google", "azure")

SCRIPT = """
import copy, json, sys
sys.path.insert(0, BUNDLE)
from backorigin.handlers import lambda_entry

def loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] in HEAVY
                  or m.startswith(("backorigin.config", "backorigin.adapters",
                                   "backorigin.cloudfront_rules")))

def event(name, **changes):
    evt = json.load(open(EVENTS + "/" + name + ".json"))
    evt["Records"][0]["cf"].update(changes)
    return evt

report = {}
request = event("origin-request-primary")
assert lambda_entry.edge(request, None) == request["Records"][0]["cf"]["request"]
response = event("origin-response-primary-200")
cf = response["Records"][0]["cf"]
cf["response"]["headers"]["x-amz-meta-backorigin-origin-etag"] = [
    {"key": "x-amz-meta-backorigin-origin-etag", "value": '"old"'}]
cf["request"]["headers"]["if-none-match"] = [{"key": "If-None-Match", "value": '"old"'}]
report["primary_status"] = lambda_entry.edge(response, None)["status"]
report["after_primary"] = loaded()

if QUEUE:
    miss = event("origin-request-secondary")
    miss["Records"][0]["cf"]["request"]["uri"] = "/photos/cat%20photo.jpg"
    sent = lambda_entry.edge(miss, None)
    report["miss_origin"] = sent["origin"]["custom"]["domainName"]
    answer = event("origin-response-secondary-200", request=sent)
    lambda_entry._handler("edge")._queue_url = QUEUE  # the bundle derives an AWS URL
    report["answer_status"] = lambda_entry.edge(answer, None)["status"]
    report["after_miss"] = loaded()
    signed = lambda_entry.edge(event("origin-request-secondary"), None)
    report["signed"] = signed["headers"]["authorization"][0]["value"]
    report["after_signed"] = loaded()
    vault = event("origin-request-secondary")
    vault["Records"][0]["cf"]["request"]["uri"] = "/vault/a.jpg"
    report["vault"] = lambda_entry.edge(vault, None)["headers"]["authorization"][0]["value"]
    report["after_vault"] = loaded()
    blob = event("origin-request-secondary")
    blob["Records"][0]["cf"]["request"]["uri"] = "/blob/a.jpg"
    sent = lambda_entry.edge(blob, None)
    report["blob"] = [sent["origin"]["custom"]["domainName"], sent["querystring"]]
    report["after_blob"] = loaded()
    private = event("origin-request-secondary")
    private["Records"][0]["cf"]["request"]["uri"] = "/private/a.jpg"
    sent = lambda_entry.edge(private, None)
    report["private"] = [sent["origin"]["custom"]["path"], sent["querystring"]]
    report["after_private"] = loaded()
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def edge_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Dependencies are not installed: the interpreter's own site-packages has all of them,
    # so anything the handler imports needlessly would load and show up.
    target = tmp_path_factory.mktemp("lean") / "bundle"
    return bundle(
        load_config(CONFIG),
        target,
        role="edge",
        install=False,
        queue_name="backorigin-copy",
        queue_region="eu-west-1",
    )


@pytest.fixture(scope="module")
def sqs() -> Iterator[SimpleNamespace]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "sqs",
        region_name="eu-west-1",
        endpoint_url=f"http://{host}:{port}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        secrets = boto3.client(
            "secretsmanager",
            region_name="eu-west-1",
            endpoint_url=f"http://{host}:{port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        secrets.create_secret(Name="edge-token", SecretString='{"token": "from-the-vault"}')
        yield SimpleNamespace(
            client=client,
            url=client.create_queue(QueueName="c")["QueueUrl"],
            endpoint=f"http://{host}:{port}",
        )
    finally:
        server.stop()


def run(edge_bundle: Path, queue: str | None, endpoint: str = "") -> dict[str, object]:
    header = (
        f"BUNDLE = {str(edge_bundle)!r}\nEVENTS = {str(EVENTS)!r}\n"
        f"HEAVY = {HEAVY!r}\nQUEUE = {queue!r}\n"
    )
    env = {
        **CREDENTIALS,
        "OLD_SITE_TOKEN": "lean-test-token",
        "AZURE_ACCOUNT_KEY": "bGVhbi10ZXN0LWFjY291bnQta2V5",
        "GCS_SA_KEY": SERVICE_ACCOUNT_KEY,
        "PATH": "/usr/bin:/bin",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
    }
    result = subprocess.run(
        [sys.executable, "-c", header + SCRIPT], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    # The handler prints its EMF metric lines; the script's report is the last line.
    *printed, last = result.stdout.splitlines()
    report: dict[str, object] = json.loads(last)
    report["printed"] = [json.loads(line) for line in printed]
    return report


def test_a_primary_event_loads_no_config_and_no_sdk(edge_bundle: Path) -> None:
    report = run(edge_bundle, None)
    assert report["primary_status"] == "304"  # the old validators were applied
    assert report["after_primary"] == []


def test_a_miss_enqueues_to_sqs_without_boto3(edge_bundle: Path, sqs: SimpleNamespace) -> None:
    report = run(edge_bundle, sqs.url, sqs.endpoint)
    assert report["miss_origin"] == "storage.googleapis.com"
    assert report["answer_status"] == "200"
    assert report["after_miss"] == []  # no models, no YAML, no SDK
    messages = sqs.client.receive_message(QueueUrl=sqs.url, WaitTimeSeconds=1)["Messages"]
    assert [json.loads(m["Body"]) for m in messages] == [{"key": "photos/cat photo.jpg"}]
    # The bundle's entry prints the miss's metrics to stdout, where Lambda logs them.
    (metrics,) = report["printed"]  # type: ignore[misc]
    assert metrics["CopiesEnqueued"] == 1
    assert metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "backorigin"
    # An origin that signs from its recipe loads no config models, adapter or SDK: the
    # secret comes from the environment, or from Secrets Manager without boto3.
    assert report["signed"] == "Bearer lean-test-token"
    assert report["after_signed"] == ["backorigin.cloudfront_rules"]
    assert report["vault"] == "Bearer from-the-vault"
    assert report["after_vault"] == ["backorigin.cloudfront_rules"]
    # An Azure account key signs a per-blob SAS with the standard library: no Azure SDK.
    domain, query = report["blob"]  # type: ignore[misc]
    assert domain == "acct.blob.core.windows.net"
    assert "sig=" in query
    assert "sp=r" in query
    assert report["after_blob"] == ["backorigin.cloudfront_rules"]
    # A GCS service account signs its URL with its RSA key (cryptography): no google-auth,
    # no token endpoint, no config models.
    path, query = report["private"]  # type: ignore[misc]
    assert path == "/private-media"
    assert "X-Goog-Algorithm=GOOG4-RSA-SHA256" in query
    assert "X-Goog-Signature=" in query
    assert report["after_private"] == ["backorigin.cloudfront_rules"]
