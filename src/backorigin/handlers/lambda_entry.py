"""Entry points of the Lambda bundles that :mod:`backorigin.bundling` writes.

Handler names: ``backorigin.handlers.lambda_entry.edge`` and ``….fetcher``. Each builds its
handler once per container from the config baked into the bundle (Lambda@Edge has no
environment variables) and the deployment facts stored next to it.
"""

from __future__ import annotations

__all__ = ["edge", "fetcher"]

import json
import os
import threading
from pathlib import Path
from typing import Any

# pydantic scans every installed package's entry points for plugins on its first model; a
# bundle has none, and the scan costs milliseconds of every cold start.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

_lock = threading.Lock()
_handlers: dict[str, Any] = {}


def _baked() -> tuple[Any, dict[str, Any]]:
    import backorigin
    from backorigin.config import load_config
    from backorigin.plugins import adapter_plugins

    directory = Path(backorigin.__file__).parent / "_baked"
    facts: dict[str, Any] = json.loads((directory / "bundle.json").read_text())
    # A bundle carries no package metadata: its adapters were resolved when it was built.
    adapter_plugins.use_only(facts["adapters"])
    config = load_config(json.loads((directory / "config.json").read_text()))
    return config, facts


def _handler(role: str) -> Any:
    with _lock:
        if role not in _handlers:
            config, facts = _baked()
            if role == "edge":
                from backorigin.handlers.edge import make_edge_handler

                _handlers[role] = make_edge_handler(
                    config,
                    queue_name=facts.get("queue_name"),
                    queue_region=facts.get("queue_region"),
                )
            else:
                from backorigin.handlers.fetcher import make_fetcher_handler

                _handlers[role] = make_fetcher_handler(config)
        return _handlers[role]


def edge(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda@Edge handler (origin-request and origin-response)."""
    result: dict[str, Any] = _handler("edge")(event, context)
    return result


def fetcher(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The fetcher Lambda handler (SQS batches or ``{"keys": [...]}``)."""
    result: dict[str, Any] = _handler("fetcher")(event, context)
    return result
