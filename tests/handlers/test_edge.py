"""The edge function on CloudFront's documented event shapes, with moto SQS and Secrets Manager."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import urllib3
from moto import mock_aws

from backorigin.config import Config, SecretResolver, load_config
from backorigin.handlers import make_edge_handler
from backorigin.handlers.edge import KEY_HEADER, EdgeHandler
from backorigin.handlers.events import MalformedEvent
from backorigin.testing.http_origin import HttpOriginServer

EVENTS = Path(__file__).resolve().parent.parent / "events"
TOKEN = "edge-test-bearer-token-7f3a9c"
REGION = "eu-west-1"
CONTEXT = SimpleNamespace(
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:edge:7"
)


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return loaded


def cf(evt: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = evt["Records"][0]["cf"]
    return record


@pytest.fixture(scope="module")
def origin() -> Iterator[HttpOriginServer]:
    with HttpOriginServer() as server:
        yield server


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        queue = sqs.create_queue(QueueName="backorigin-copy")["QueueUrl"]
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secrets.create_secret(Name="old-site", SecretString=json.dumps({"token": TOKEN}))
        yield SimpleNamespace(sqs=sqs, queue=queue, secrets=secrets)


def config_for(origin_url: str) -> Config:
    return load_config(f"""\
bucket: {{name: media-new, region: {REGION}}}
origins:
  - name: web
    type: http
    base_url: "{origin_url}static/"
    auth:
      mode: bearer
      token: {{secret: {{aws_secretsmanager: old-site, key: token}}}}
routes:
  - prefix: images/
    origin: web
    rewrite: {{strip_prefix: images/, add_prefix: img/}}
edge:
  negative_ttl: 45s
  forward_query: [v]
""")


@pytest.fixture
def handler(aws: SimpleNamespace, origin: HttpOriginServer) -> EdgeHandler:
    return make_edge_handler(
        config_for(origin.url),
        queue_url=aws.queue,
        sqs_client=aws.sqs,
        secrets=SecretResolver(secretsmanager_client=aws.secrets),
    )


def queued(aws: SimpleNamespace) -> list[dict[str, Any]]:
    messages = aws.sqs.receive_message(QueueUrl=aws.queue, MaxNumberOfMessages=10).get(
        "Messages", []
    )
    return [json.loads(m["Body"]) for m in messages]


# --- origin-request --------------------------------------------------------------------------


def test_primary_request_passes_untouched(handler: EdgeHandler) -> None:
    original = event("origin-request-primary")
    result = handler(copy.deepcopy(original), CONTEXT)
    assert result == cf(original)["request"]


def test_secondary_request_is_routed_rewritten_and_signed(
    handler: EdgeHandler, origin: HttpOriginServer
) -> None:
    request = handler(event("origin-request-secondary"), CONTEXT)
    host = urllib3.util.parse_url(origin.url)
    custom = request["origin"]["custom"]
    assert (custom["domainName"], custom["port"], custom["protocol"]) == (
        host.host,
        host.port,
        "http",
    )
    assert custom["path"] == "/static"
    assert custom["readTimeout"] == 30  # CloudFront's other settings are kept
    assert request["uri"] == "/img/cat%20photo.jpg"
    assert request["querystring"] == "v=3"  # only the configured parameters
    headers = request["headers"]
    assert headers["host"] == [{"key": "Host", "value": f"{host.host}:{host.port}"}]
    assert "cookie" not in headers
    assert headers["authorization"][0]["value"] == f"Bearer {TOKEN}"  # ours, not the viewer's
    assert headers[KEY_HEADER][0]["value"] == "images/cat%20photo.jpg"
    assert headers["range"][0]["value"] == "bytes=0-99"


def test_the_signed_request_is_accepted_by_the_origin(
    handler: EdgeHandler, origin: HttpOriginServer
) -> None:
    """Replay what CloudFront would send, against a server that demands the token."""
    origin.put("static/img/cat photo.jpg", b"meow" * 100)
    origin.require_headers("static/img/cat photo.jpg", {"Authorization": f"Bearer {TOKEN}"})
    request = handler(event("origin-request-secondary"), CONTEXT)
    custom = request["origin"]["custom"]
    url = (
        f"{custom['protocol']}://{custom['domainName']}:{custom['port']}"
        f"{custom['path']}{request['uri']}?{request['querystring']}"
    )
    headers = {v[0]["key"]: v[0]["value"] for v in request["headers"].values()}
    response = urllib3.request("GET", url, headers=headers)
    assert (response.status, response.data) == (206, b"meow" * 25)
    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    assert urllib3.request("GET", url, headers=headers).status == 401


@pytest.mark.parametrize(
    "uri",
    [
        "/images/..%2F..%2Fetc%2Fpasswd",
        "/images/a%00b",
        "/images/%zz",
        "/",
        "/.backorigin/x",
        "/images/back%5Cslash",
    ],
)
def test_rejected_keys_get_a_400_and_no_origin_request(handler: EdgeHandler, uri: str) -> None:
    evt = event("origin-request-secondary")
    cf(evt)["request"]["uri"] = uri
    response = handler(evt, CONTEXT)
    assert response["status"] == "400"
    assert "origin" not in response
    assert handler._adapters == {}, "no adapter may be built for a rejected key"


def test_unrouted_keys_get_a_cacheable_404(handler: EdgeHandler) -> None:
    evt = event("origin-request-secondary")
    cf(evt)["request"]["uri"] = "/docs/readme.txt"
    response = handler(evt, CONTEXT)
    assert response["status"] == "404"
    assert response["headers"]["cache-control"][0]["value"] == "max-age=45"


def test_an_unreadable_secret_gives_503_not_an_exception(
    aws: SimpleNamespace, origin: HttpOriginServer
) -> None:
    aws.secrets.delete_secret(SecretId="old-site", ForceDeleteWithoutRecovery=True)
    handler = make_edge_handler(
        config_for(origin.url),
        queue_url=aws.queue,
        sqs_client=aws.sqs,
        secrets=SecretResolver(secretsmanager_client=aws.secrets),
    )
    response = handler(event("origin-request-secondary"), CONTEXT)
    assert response["status"] == "503"
    assert TOKEN not in json.dumps(response)


@pytest.mark.parametrize(
    "bad",
    [{}, {"Records": []}, {"Records": [{"cf": {"config": {}}}]}, {"Records": [{"cf": None}]}],
)
def test_malformed_events_raise_a_clear_error(handler: EdgeHandler, bad: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent):
        handler(bad, CONTEXT)


def test_missing_headers_are_tolerated(handler: EdgeHandler) -> None:
    evt = event("origin-request-secondary")
    del cf(evt)["request"]["headers"]
    request = handler(evt, CONTEXT)
    assert request["headers"]["authorization"][0]["value"] == f"Bearer {TOKEN}"


# --- origin-response -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 206, 304])
def test_served_from_origin_enqueues_a_copy(
    handler: EdgeHandler, aws: SimpleNamespace, status: int
) -> None:
    response = handler(event(f"origin-response-secondary-{status}"), CONTEXT)
    assert response["status"] == str(status)
    assert response["headers"]["x-backorigin"][0]["value"] == "origin"
    assert queued(aws) == [{"key": "images/cat photo.jpg"}]


def test_a_key_enqueued_moments_ago_is_not_enqueued_again(
    handler: EdgeHandler, aws: SimpleNamespace
) -> None:
    for _ in range(3):
        handler(event("origin-response-secondary-200"), CONTEXT)
    assert queued(aws) == [{"key": "images/cat photo.jpg"}]


def test_a_404_is_cached_briefly_and_not_enqueued(
    handler: EdgeHandler, aws: SimpleNamespace
) -> None:
    response = handler(event("origin-response-secondary-404"), CONTEXT)
    assert response["headers"]["cache-control"][0]["value"] == "max-age=45"
    assert response["headers"]["x-backorigin"][0]["value"] == "origin"
    assert queued(aws) == []


@pytest.mark.parametrize("status", [403, 503])
def test_errors_pass_through_without_a_copy(
    handler: EdgeHandler, aws: SimpleNamespace, status: int
) -> None:
    original = event(f"origin-response-secondary-{status}")
    response = handler(copy.deepcopy(original), CONTEXT)
    assert response["status"] == str(status)
    assert "cache-control" not in response["headers"]
    assert queued(aws) == []


@pytest.mark.parametrize("name", ["origin-response-primary-404", "origin-response-primary-200"])
def test_primary_responses_pass_untouched(
    handler: EdgeHandler, aws: SimpleNamespace, name: str
) -> None:
    original = event(name)
    assert handler(copy.deepcopy(original), CONTEXT) == cf(original)["response"]
    assert queued(aws) == []


def test_a_failed_enqueue_still_serves_the_response(
    aws: SimpleNamespace, origin: HttpOriginServer, caplog: pytest.LogCaptureFixture
) -> None:
    handler = make_edge_handler(
        config_for(origin.url),
        queue_url=aws.queue.replace("backorigin-copy", "no-such-queue"),
        sqs_client=aws.sqs,
    )
    original = event("origin-response-secondary-200")
    response = handler(copy.deepcopy(original), CONTEXT)
    assert response["status"] == "200"
    assert response["body" if "body" in response else "headers"]
    assert "could not enqueue" in caplog.text


def test_queue_url_comes_from_the_function_arn(
    aws: SimpleNamespace, origin: HttpOriginServer
) -> None:
    handler = make_edge_handler(
        config_for(origin.url),
        queue_name="backorigin-copy",
        queue_region=REGION,
        sqs_client=aws.sqs,
    )
    handler(event("origin-response-secondary-200"), CONTEXT)
    assert queued(aws) == [{"key": "images/cat photo.jpg"}]
    assert handler._queue_url_for(CONTEXT) == (
        f"https://sqs.{REGION}.amazonaws.com/123456789012/backorigin-copy"
    )


def test_a_primary_hit_imports_no_sdk(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "bucket: {name: media-new}\norigins:\n"
        "  - {name: web, type: http, base_url: 'https://old.example.com/'}\n"
    )
    code = f"""
import json, sys
from backorigin.config import load_config
from backorigin.handlers import make_edge_handler
handler = make_edge_handler(load_config({str(config)!r}))
event = json.load(open({str(EVENTS / "origin-request-primary.json")!r}))
handler(event, None)
heavy = [m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "google", "azure")]
print(json.dumps(heavy))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
