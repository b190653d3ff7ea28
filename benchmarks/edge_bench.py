"""Edge function budgets: cold import, primary-origin events, the origin-response path.

Run: ``.venv/bin/python benchmarks/edge_bench.py`` (builds an edge bundle for this
interpreter in a temporary directory, then measures). Targets: entry import (including the
baked config's validation) <= 60 ms median in a fresh interpreter; primary-origin events
<= 20 us each; the secondary origin-response path, excluding the network, <= 2 ms.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from backorigin.bundling import bundle
from backorigin.config import load_config
from backorigin.handlers import make_edge_handler

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
routes:
  - {prefix: images/, origin: web, fallback: [legacy], rewrite: {strip_prefix: images/}}
  - {prefix: "", origin: legacy}
"""
COLD = """
import time
t0 = time.perf_counter()
from backorigin.handlers import lambda_entry
lambda_entry._handler("edge")
print((time.perf_counter() - t0) * 1000)
"""


class NullSqs:
    """Accepts messages without sending them: the network is outside this budget."""

    def send_message(self, **_: Any) -> dict[str, str]:
        return {"MessageId": "0"}


def cold_import_ms(bundle_dir: Path, runs: int) -> list[float]:
    code = f"import sys; sys.path[:0] = [{str(bundle_dir)!r}]\n" + COLD
    out = []
    for _ in range(runs):
        result = subprocess.run(  # noqa: S603 - this interpreter, our own code
            [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True
        )
        out.append(float(result.stdout))
    return out


def per_call_us(function: Any, make_arg: Any, number: int) -> float:
    args = [make_arg(i) for i in range(number)]
    start = time.perf_counter()
    for arg in args:
        function(arg, None)
    return (time.perf_counter() - start) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters to time")
    parser.add_argument("--calls", type=int, default=20000, help="events per measurement")
    args = parser.parse_args()

    config = load_config(CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        target = bundle(
            config,
            Path(tmp) / "edge",
            role="edge",
            python=version,
            queue_name="q",
            queue_region="eu-west-1",
        )
        cold = cold_import_ms(target, args.runs)

    handler = make_edge_handler(config, queue_url="https://sqs.invalid/q", sqs_client=NullSqs())
    primary_request = json.loads((EVENTS / "origin-request-primary.json").read_text())
    primary_response = json.loads((EVENTS / "origin-response-primary-200.json").read_text())
    secondary = json.loads((EVENTS / "origin-response-secondary-200.json").read_text())

    def fresh_secondary(i: int) -> dict[str, Any]:
        event = copy.deepcopy(secondary)
        headers = event["Records"][0]["cf"]["request"]["headers"]
        headers["x-backorigin-key"][0]["value"] = f"images/cat-{i}.jpg"  # defeats the de-dup
        return event

    handler(primary_request)  # warm up
    rows = [
        ("entry import + config, fresh interpreter (median ms)", statistics.median(cold), 60.0),
        (
            "primary origin-request (us/event)",
            per_call_us(handler, lambda _: primary_request, args.calls),
            20.0,
        ),
        (
            "primary origin-response (us/event)",
            per_call_us(handler, lambda _: primary_response, args.calls),
            20.0,
        ),
        (
            "secondary origin-response, enqueue, no network (us/event)",
            per_call_us(handler, fresh_secondary, args.calls // 10),
            2000.0,
        ),
    ]
    print(f"python {sys.version.split()[0]}; {args.runs} fresh interpreters; {args.calls} events")
    print("| measurement | value | budget | verdict |")
    print("|---|---|---|---|")
    for name, value, budget in rows:
        print(f"| {name} | {value:.1f} | {budget:g} | {'met' if value <= budget else 'MISSED'} |")
    print(f"\ncold import runs (ms): {', '.join(f'{v:.1f}' for v in sorted(cold))}")


if __name__ == "__main__":
    main()
