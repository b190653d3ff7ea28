"""The edge function's rewritten, signed request, replayed against a server that checks it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import urllib3

from backorigin.config import SecretResolver, load_config
from backorigin.handlers import make_edge_handler

EVENTS = Path(__file__).resolve().parent.parent / "events"


def replay(request: dict[str, Any]) -> urllib3.BaseHTTPResponse:
    """Send the request the way CloudFront would after the origin-request trigger."""
    custom = request["origin"]["custom"]
    url = f"{custom['protocol']}://{custom['domainName']}:{custom['port']}{custom['path']}"
    url += request["uri"] + (f"?{request['querystring']}" if request["querystring"] else "")
    headers = {values[0]["key"]: values[0]["value"] for values in request["headers"].values()}
    return urllib3.request("GET", url, headers=headers, redirect=False)


def test_a_sigv4_signed_request_is_accepted_by_seaweedfs(
    seaweedfs: Any, s3_client: Any, bucket: str, s3_credentials: dict[str, str]
) -> None:
    s3_client.put_object(Bucket=bucket, Key="legacy/img/cat photo.jpg", Body=b"purr" * 50)
    config = load_config(f"""\
bucket: {{name: media-new, region: us-east-1}}
origins:
  - name: old
    type: s3
    bucket: {bucket}
    region: us-east-1
    endpoint_url: "{seaweedfs.url}"
    prefix: legacy/
    auth:
      mode: access_key
      access_key_id: {{secret: {{env: OLD_KEY_ID}}}}
      secret_access_key: {{secret: {{env: OLD_SECRET}}}}
routes:
  - {{prefix: images/, origin: old, rewrite: {{strip_prefix: images/, add_prefix: img/}}}}
""")
    environ = {
        "OLD_KEY_ID": s3_credentials["AWS_ACCESS_KEY_ID"],
        "OLD_SECRET": s3_credentials["AWS_SECRET_ACCESS_KEY"],
    }
    handler = make_edge_handler(config, secrets=SecretResolver(environ=environ))
    event = json.loads((EVENTS / "origin-request-secondary.json").read_text())
    request = handler(event, None)
    assert request["headers"]["authorization"][0]["value"].startswith("AWS4-HMAC-SHA256")
    assert "cookie" not in request["headers"]
    response = replay(request)
    assert response.status == 206, response.data[:300]
    assert response.data == (b"purr" * 50)[:100]  # the viewer's Range passes through

    wrong = SecretResolver(environ={**environ, "OLD_SECRET": "not-the-secret"})
    forged = make_edge_handler(config, secrets=wrong)
    event = json.loads((EVENTS / "origin-request-secondary.json").read_text())
    assert replay(forged(event, None)).status == 403
