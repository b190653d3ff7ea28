"""Entry points of the Lambda bundles that :mod:`backorigin.bundling` writes.

Handler names: ``backorigin.handlers.lambda_entry.edge`` and ``….fetcher``. Lambda@Edge has
no environment variables, so each handler is built once per container from what the bundle
carries: the edge plan (plain JSON), the validated config and the deployment facts.

The edge entry answers events for the S3 primary before it builds anything: passing the
request through and restoring the old origin's validators on the response need neither the
config nor the handler. Misses build the handler from the plan; the config models are loaded
only if an origin is asked for that signs without an edge recipe (see
:mod:`backorigin.handlers.edge_signing`).
"""

from __future__ import annotations

__all__ = ["edge", "fetcher"]

import json
import os
import threading

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at a cold start
if TYPE_CHECKING:
    from typing import Any

    from backorigin.config.models import Config

# pydantic scans every installed package's entry points for plugins on its first model; a
# bundle has none, and the scan costs milliseconds of a cold start that needs the config.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

_lock = threading.Lock()
_handlers: dict[str, Any] = {}
_BAKED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_baked")


def _read(name: str) -> Any:
    with open(os.path.join(_BAKED, name), encoding="utf-8") as file:
        return json.load(file)


def _config() -> Config:
    from backorigin.config import load_config
    from backorigin.plugins import adapter_plugins

    # A bundle carries no package metadata: its adapters were resolved when it was built.
    adapter_plugins.use_only(_read("bundle.json")["adapters"])
    return load_config(_read("config.json"))


def _handler(role: str) -> Any:
    with _lock:
        if role not in _handlers:
            if role == "edge":
                from backorigin.handlers.edge import EdgeHandler
                from backorigin.handlers.plan import EdgePlan

                facts = _read("bundle.json")
                _handlers[role] = EdgeHandler(
                    EdgePlan(_read("edge-plan.json")),
                    config=_config,
                    queue_url=None,
                    queue_name=facts.get("queue_name"),
                    queue_region=facts.get("queue_region"),
                    sqs_client=None,
                    secrets=None,
                    adapters={},
                    clock=_monotonic(),
                    # Printed lines land in the log group of the region the function runs
                    # in, where CloudWatch reads them as EMF metrics.
                    metrics=print,
                )
            else:
                from backorigin.handlers.fetcher import make_fetcher_handler

                _handlers[role] = make_fetcher_handler(_config())
        return _handlers[role]


def _monotonic() -> Any:
    import time

    return time.monotonic


def edge(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda@Edge handler (origin-request and origin-response)."""
    try:
        cf = event["Records"][0]["cf"]
        request = cf["request"]
        origin = request.get("origin")
        kind = cf["config"]["eventType"]
    except (KeyError, IndexError, TypeError, AttributeError):
        pass  # the full handler reports a malformed event
    else:
        if isinstance(origin, dict) and "s3" in origin and isinstance(request, dict):
            if kind == "origin-request":
                passed: dict[str, Any] = request
                return passed
            response = cf.get("response")
            if kind == "origin-response" and isinstance(response, dict):
                from backorigin.handlers.validators import restore_validators

                try:
                    restore_validators(request, response)
                except Exception:  # never turn a served response into a viewer error
                    import logging

                    logging.getLogger("backorigin.edge").exception("validators not restored")
                return response
    result: dict[str, Any] = _handler("edge")(event, context)
    return result


def fetcher(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The fetcher Lambda handler (SQS batches or ``{"keys": [...]}``)."""
    result: dict[str, Any] = _handler("fetcher")(event, context)
    return result
