"""The edge function's rewritten, signed request, replayed as CloudFront sends it (with the
headers CloudFront adds after the trigger) against servers that check it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from backorigin.config import SecretResolver, load_config
from backorigin.errors import ConfigError
from backorigin.handlers import make_edge_handler
from backorigin.local.cloudfront import add_origin_request_headers
from backorigin.testing.strict import StrictGcsProxy

EVENTS = Path(__file__).resolve().parent.parent / "events"
HMAC_ID = "GOOG1EDGESIGNINGTEST"
HMAC_SECRET = "edge-signing-hmac-secret"


def replay(event: dict[str, Any], request: dict[str, Any]) -> urllib3.BaseHTTPResponse:
    """Send the request the way CloudFront would after the origin-request trigger."""
    sent = add_origin_request_headers(
        request,
        request_id=event["Records"][0]["cf"]["config"]["requestId"],
        client_ip=request["clientIp"],
    )
    custom = sent["origin"]["custom"]
    url = f"{custom['protocol']}://{custom['domainName']}:{custom['port']}{custom['path']}"
    url += sent["uri"] + (f"?{sent['querystring']}" if sent["querystring"] else "")
    headers = {values[0]["key"]: values[0]["value"] for values in sent["headers"].values()}
    return urllib3.request("GET", url, headers=headers, redirect=False)


@pytest.fixture
def strict_gcs(fake_gcs: Any) -> Iterator[StrictGcsProxy]:
    with StrictGcsProxy(fake_gcs.url, hmac_keys={HMAC_ID: HMAC_SECRET}) as proxy:
        yield proxy  # type: ignore[misc]


def test_an_hmac_signed_url_passes_cloud_storages_rules(
    fake_gcs: Any, strict_gcs: StrictGcsProxy
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test-project",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs.url},
    )
    client.create_bucket("edge-signing")
    blob = client.bucket("edge-signing").blob("legacy/img/cat photo.jpg")
    blob.upload_from_string(b"purr" * 50)
    config = load_config(f"""\
bucket: {{name: media-new, region: us-east-1}}
origins:
  - name: old
    type: gcs
    bucket: edge-signing
    endpoint_url: "{strict_gcs.url}"
    prefix: legacy/
    auth: {{mode: hmac, access_id: {{secret: {{env: ID}}}}, secret: {{secret: {{env: SECRET}}}}}}
routes:
  - {{prefix: images/, origin: old, rewrite: {{strip_prefix: images/, add_prefix: img/}}}}
""")
    environ = {"ID": HMAC_ID, "SECRET": HMAC_SECRET}
    handler = make_edge_handler(config, secrets=SecretResolver(environ=environ))
    event = json.loads((EVENTS / "origin-request-secondary.json").read_text())
    request = handler(event, None)
    assert "X-Goog-Algorithm=GOOG4-HMAC-SHA256" in request["querystring"]
    assert "cookie" not in request["headers"]
    response = replay(event, request)
    assert strict_gcs.refused == []
    assert response.status == 206, response.data[:300]
    assert response.data == (b"purr" * 50)[:100]  # the viewer's Range passes through

    wrong = SecretResolver(environ={**environ, "SECRET": "not-the-secret"})
    forged = make_edge_handler(config, secrets=wrong)
    event = json.loads((EVENTS / "origin-request-secondary.json").read_text())
    assert replay(event, forged(event, None)).status == 403


def test_a_signing_s3_origin_is_refused_where_cloudfront_reaches_it() -> None:
    """S3 refuses a SigV4 request once CloudFront adds X-Amz-Cf-Id (see tests/adapters)."""
    with pytest.raises(ConfigError, match="X-Amz-Cf-Id"):
        load_config("""\
bucket: {name: media-new, region: us-east-1}
origins:
  - {name: old, type: s3, bucket: old-media, region: us-east-1, auth: {mode: default}}
routes:
  - {prefix: images/, origin: old}
""")
