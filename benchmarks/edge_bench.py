"""Edge function budgets: cold starts against a bare interpreter, and warm events.

Run: ``.venv/bin/python benchmarks/edge_bench.py [--runs 21]``. It builds an edge bundle for
this interpreter (precompiled, as deployed), starts moto's SQS server on 127.0.0.1, then times
fresh interpreters (``python -S -I``, wall time from spawn to exit), interleaved round by round
so that load on a shared machine hits every kind alike:

* bare: ``import json, urllib.request, hashlib, hmac`` (what a Python Lambda runtime loads);
* primary cold: import the bundle's entry, one origin-request and one origin-response for the
  S3 primary (the response carries provenance, so the validators are restored);
* miss cold: import the entry, origin-request for a miss routed to an origin reached without
  signing, origin-response 200 that enqueues the copy job to the local SQS server;
* the same two after the bare imports (a Lambda runtime has loaded those before it imports
  the handler), which shows what the function itself adds;
* miss cold, signing origin: the same for an origin that signs (HTTP bearer token), signed
  from its adapter's edge recipe, the token read from the environment, or from a Secrets
  Manager secret on the same moto server (``GetSecretValue`` over SigV4, no boto3);
* miss cold, GCS service account: the URL signed with the account's RSA key (``cryptography``
  loads; no google-auth, no token endpoint).

Budgets: primary cold <= 1.2x bare, miss cold <= 2.0x bare (medians; the signing misses are
held to the miss budget too); warm primary events
<= 20 us each; a warm miss (origin-request + origin-response with the enqueue signed and
serialized, no network) <= 2 ms.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from backorigin.bundling import bundle
from backorigin.config import load_config
from backorigin.handlers import lambda_entry, make_edge_handler
from backorigin.handlers.sqs import SqsClient
from backorigin.testing.service_account import make_service_account_key

EVENTS = Path(__file__).resolve().parent.parent / "tests" / "events"
CONFIG = """\
bucket: {name: media-new, region: eu-west-1}
origins:
  - name: legacy
    type: gcs
    bucket: old-media
  - name: web
    type: http
    base_url: https://old.example.com/static/
    auth: {mode: bearer, token: {secret: {env: OLD_SITE_TOKEN}}}
  - name: vault
    type: http
    base_url: https://vault.example.com/
    auth: {mode: bearer, token: {secret: {aws_secretsmanager: bench-token, key: token}}}
  - name: private
    type: gcs
    bucket: private-media
    auth: {mode: service_account, credentials: {secret: {env: GCS_SA_KEY}}}
routes:
  - {prefix: images/, origin: web, fallback: [legacy], rewrite: {strip_prefix: images/}}
  - {prefix: vault/, origin: vault, rewrite: {strip_prefix: vault/}}
  - {prefix: private/, origin: private, rewrite: {strip_prefix: private/}}
  - {prefix: "", origin: legacy}
"""
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "OLD_SITE_TOKEN": "bench-token",
    "AWS_REGION": "eu-west-1",
}
BARE = "import json, urllib.request, hashlib, hmac\n"
# Each cold script ends by checking its result, so a broken path cannot look fast.
PRIMARY = """
import json, sys
sys.path.insert(0, {bundle!r})
from backorigin.handlers import lambda_entry
request, response = json.loads({events!r})
assert lambda_entry.edge(request, None)["uri"]
assert lambda_entry.edge(response, None)["status"] == "304"
"""
MISS = """
import json, sys
sys.path.insert(0, {bundle!r})
from backorigin.handlers import lambda_entry
request, response = json.loads({events!r})
lambda_entry._handler("edge")._queue_url = {queue!r}  # the bundle would derive an AWS URL
sent = lambda_entry.edge(request, None)
response["Records"][0]["cf"]["request"] = sent
assert lambda_entry.edge(response, None)["status"] == "200"
assert sent["headers"].get("authorization", [{{"value": "Bearer x"}}])[0]["value"] != "Bearer "
heavy = ("boto3", "botocore", "pydantic", "yaml", "google")
assert not [m for m in sys.modules if m.split(".")[0] in heavy]
"""


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return loaded


def primary_events() -> list[dict[str, Any]]:
    request = event("origin-request-primary")
    response = event("origin-response-primary-200")
    cf = response["Records"][0]["cf"]
    cf["response"]["headers"].update(
        {
            "x-amz-meta-backorigin-origin-etag": [
                {"key": "x-amz-meta-backorigin-origin-etag", "value": '"0TGgMtyYKyngiOlAhr2Rkw=="'}
            ],
            "x-amz-meta-backorigin-origin-last-modified": [
                {
                    "key": "x-amz-meta-backorigin-origin-last-modified",
                    "value": "2026-11-02T10:20:30+00:00",
                }
            ],
        }
    )
    cf["request"]["headers"]["if-none-match"] = [
        {"key": "If-None-Match", "value": '"0TGgMtyYKyngiOlAhr2Rkw=="'}
    ]
    return [request, response]


def miss_events(uri: str, key: str) -> list[dict[str, Any]]:
    request = event("origin-request-secondary")
    request["Records"][0]["cf"]["request"]["uri"] = uri
    response = event("origin-response-secondary-200")
    response["Records"][0]["cf"]["request"]["headers"]["x-backorigin-key"][0]["value"] = key
    return [request, response]


def spawn_ms(code: str, env: Mapping[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-S", "-I", "-c", code], check=True, env=dict(env), capture_output=True
    )
    return (time.perf_counter() - start) * 1000


def per_call_us(function: Callable[..., Any], args: list[Any]) -> float:
    start = time.perf_counter()
    for arg in args:
        function(arg, None)
    return (time.perf_counter() - start) / len(args) * 1e6


def null_transport(
    method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float
) -> tuple[int, bytes]:
    """SQS's answer without the network (the MD5 of ``{"key": ...}`` is not checked: none)."""
    return 200, b'{"MessageId": "0"}'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21, help="fresh interpreters per kind")
    parser.add_argument("--calls", type=int, default=20000, help="warm primary events")
    args = parser.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    config = load_config(CONFIG)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        **CREDENTIALS,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # Lambda@Edge has no environment variables; here they point the secret at moto.
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": f"http://{host}:{port}",
        "GCS_SA_KEY": make_service_account_key().json,  # nothing is sent to Google
    }
    try:
        import boto3

        sqs = boto3.client(
            "sqs",
            region_name="eu-west-1",
            endpoint_url=f"http://{host}:{port}",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        queue = sqs.create_queue(QueueName="bench-copy")["QueueUrl"]
        boto3.client(
            "secretsmanager",
            region_name="eu-west-1",
            endpoint_url=f"http://{host}:{port}",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        ).create_secret(Name="bench-token", SecretString=json.dumps({"token": "vault-token"}))
        with tempfile.TemporaryDirectory() as tmp:
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            target = bundle(
                config,
                Path(tmp) / "edge",
                role="edge",
                python=version,
                queue_name="bench-copy",
                queue_region="eu-west-1",
            )
            primary = PRIMARY.format(bundle=str(target), events=json.dumps(primary_events()))

            def miss(i: int, prefix: str = "cold/") -> str:
                events = json.dumps(miss_events(f"/{prefix}{i}.jpg", f"{prefix}{i}.jpg"))
                return MISS.format(bundle=str(target), events=events, queue=queue)

            # "after the runtime": the bare imports first, as a Lambda runtime has loaded them
            # before the handler's module is imported; the difference is what the function adds.
            kinds: dict[str, Callable[[int], str]] = {
                "bare": lambda _: BARE,
                "primary": lambda _: primary,
                "primary after the runtime": lambda _: BARE + primary,
                "miss": miss,
                "miss after the runtime": lambda i: BARE + miss(i, "warmed/"),
                "miss, signing origin": lambda i: miss(i, "images/"),
                "miss, signing origin, Secrets Manager": lambda i: miss(i, "vault/"),
                "miss, GCS service account": lambda i: miss(i, "private/"),
            }
            cold: dict[str, list[float]] = {kind: [] for kind in kinds}
            names = list(kinds)
            for i in range(args.runs):
                # Rotate the order each round: no kind always runs first or last.
                for kind in names[i % len(names) :] + names[: i % len(names)]:
                    cold[kind].append(spawn_ms(kinds[kind](i), env))
        received = 0
        while True:
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                break
            received += len(got)
            sqs.delete_message_batch(
                QueueUrl=queue,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(got)
                ],
            )
    finally:
        server.stop()

    # Warm: the entry's primary fast path, and a miss through the handler with the real SQS
    # client (signing and serialization included) over a transport that does not send.
    request, response = primary_events()
    warm_request = per_call_us(lambda_entry.edge, [request] * args.calls)
    warm_response = per_call_us(
        lambda_entry.edge, [copy.deepcopy(response) for _ in range(args.calls)]
    )
    handler = make_edge_handler(
        config,
        queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/bench-copy",
        sqs_client=SqsClient("eu-west-1", environ=CREDENTIALS, transport=null_transport),
    )
    misses = [miss_events(f"/warm/{i}.jpg", f"warm/{i}.jpg") for i in range(args.calls // 10)]
    handler(copy.deepcopy(misses[0][0]), None)  # build what the first miss builds

    def one_miss(pair: list[dict[str, Any]], context: Any) -> None:
        sent = handler(pair[0], context)
        pair[1]["Records"][0]["cf"]["request"] = sent
        assert handler(pair[1], context)["status"] == "200"

    warm_miss = per_call_us(one_miss, misses[1:])

    bare = statistics.median(cold["bare"])
    fastest = {kind: min(values) for kind, values in cold.items()}
    rows = [
        ("bare interpreter", bare, None),
        ("primary cold", statistics.median(cold["primary"]), 1.2),
        (
            "primary cold after the runtime's imports",
            statistics.median(cold["primary after the runtime"]),
            1.2,
        ),
        ("miss cold (enqueue to moto SQS)", statistics.median(cold["miss"]), 2.0),
        (
            "miss cold after the runtime's imports",
            statistics.median(cold["miss after the runtime"]),
            2.0,
        ),
        (
            "miss cold, signing origin (bearer token from the environment)",
            statistics.median(cold["miss, signing origin"]),
            2.0,
        ),
        (
            "miss cold, signing origin (bearer token from Secrets Manager on moto)",
            statistics.median(cold["miss, signing origin, Secrets Manager"]),
            2.0,
        ),
        (
            "miss cold, GCS service account (URL signed with its RSA key)",
            statistics.median(cold["miss, GCS service account"]),
            2.0,
        ),
    ]
    load = os.getloadavg()[0]
    print(
        f"python {sys.version.split()[0]}; {args.runs} fresh interpreters per kind, interleaved;"
        f" load average {load:.1f}; {received} copy jobs received by SQS"
    )
    print("| measurement | median ms / us | x bare | fastest run x bare | budget | verdict |")
    print("|---|---|---|---|---|---|")
    for (name, value, budget), kind in zip(rows, cold, strict=True):
        ratio = value / bare
        verdict = "" if budget is None else ("met" if ratio <= budget else "MISSED")
        shown = "" if budget is None else f"<= {budget:g}x bare"
        low = fastest[kind] / fastest["bare"]
        print(f"| {name} | {value:.1f} | {ratio:.2f} | {low:.2f} | {shown} | {verdict} |")
    for name, value, budget_us in (
        ("warm primary origin-request, us/event", warm_request, 20.0),
        ("warm primary origin-response (validators restored), us/event", warm_response, 20.0),
        ("warm miss: origin-request + origin-response + signed enqueue, us", warm_miss, 2000.0),
    ):
        verdict = "met" if value <= budget_us else "MISSED"
        print(f"| {name} | {value:.1f} | | | <= {budget_us:g} | {verdict} |")
    print()
    for kind, values in cold.items():
        print(f"{kind} runs (ms): {', '.join(f'{v:.1f}' for v in sorted(values))}")


if __name__ == "__main__":
    main()
