"""The edge plan agrees with the config models it is generated from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backorigin.adapters import create_adapter
from backorigin.bundling import EDGE_PLAN_FORMAT, edge_plan
from backorigin.config import Config, SecretResolver, load_config
from backorigin.errors import InvalidKey, ObjectNotFound
from backorigin.handlers.plan import PLAN_FORMAT, EdgePlan, PlanError
from backorigin.keys import Router
from backorigin.types import OriginRequest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BUILT_IN = sorted(
    p for p in EXAMPLES.glob("*/backorigin.yaml") if p.parent.name != "custom-adapter"
)
# Auth modes in which the edge reaches an origin with the contract's defaults.
UNSIGNED = {"anonymous", "none"}
# Auth modes the built-in adapters sign at the edge from a recipe (no adapter needed).
RECIPES = {
    "basic",
    "bearer",
    "headers",
    "sas",
    "account_key",
    "connection_string",
    "hmac",
    "service_account",  # with a key (validation refuses one without at the edge)
}

ROUTED = """\
bucket: {name: media-new, region: eu-west-1}
origins:
  - {name: a, type: http, base_url: 'https://a.example.com/base/', prefix: 'p/'}
  - {name: b, type: gcs, bucket: old}
  - name: c
    type: http
    base_url: https://c.example.com/
    auth: {mode: bearer, token: {secret: {env: T}}}
routes:
  - {prefix: img/, suffix: [.jpg, .png], origin: b, fallback: [a, c],
     rewrite: {strip_prefix: img/, add_prefix: pictures/}}
  - {prefix: img/, origin: a}
  - {prefix: docs/, origin: c, rewrite: {strip_prefix: docs/}}
  - {prefix: x/, origin: a, rewrite: {strip_prefix: x/, add_prefix: ''}}
edge: {negative_ttl: 12s, forward_query: [v, w]}
"""
KEYS = [
    "img/cat.jpg",
    "img/cat.gif",
    "img/a/b/c.png",
    "img/.jpg",
    "docs/readme.md",
    "docs/",
    "x/",
    "x/..",
    "other/file",
    "caf\u00e9/\u00fc.txt",
    "a" * 1030,
    "img/" + "a" * 1016 + ".jpg",
]


def plan_of(config: Config) -> EdgePlan:
    # Through JSON, exactly as a bundle carries it.
    return EdgePlan.from_json(json.dumps(edge_plan(config)))


def outcome(call: object, key: str) -> object:
    try:
        return call(key)  # type: ignore[operator]
    except (InvalidKey, ObjectNotFound) as exc:
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize("path", [*BUILT_IN, None], ids=lambda p: p.parent.name if p else "routed")
def test_routes_match_the_router(path: Path | None) -> None:
    config = load_config(path if path is not None else ROUTED)
    plan, router = plan_of(config), Router(config)
    keys = [*KEYS, *(r.prefix + "k.jpg" for r in config.routes)]
    for key in keys:
        assert outcome(plan.route, key) == outcome(router.route, key), key


@pytest.mark.parametrize("path", BUILT_IN, ids=lambda p: p.parent.name)
def test_origins_match_their_adapters(path: Path) -> None:
    config = load_config(path)
    plan = plan_of(config)
    for origin in config.origins:
        planned = plan.origins[origin.name]
        adapter = create_adapter(origin, secrets=SecretResolver(environ={}))
        spec = adapter.cloudfront_origin()
        assert (planned.domain, planned.path, planned.protocol, planned.port) == (
            spec.domain,
            spec.path,
            spec.protocol,
            spec.port,
        )
        assert (planned.signing is not None) == (origin.auth.mode in RECIPES), origin.name
        assert planned.lean == (origin.auth.mode in UNSIGNED | RECIPES), origin.name
        if planned.lean and planned.signing is None:  # skipping sign() changes nothing
            request = OriginRequest("GET", "/k%20x.jpg", "v=1", {"host": "h", "range": "x"})
            assert adapter.sign(request) == request
        for key in ("a/b c.jpg", "caf\u00e9", "x%y"):
            assert planned.origin_uri(key) == adapter.origin_uri(key)
        with pytest.raises(InvalidKey):
            planned.origin_uri("a/../b")


def test_edge_settings_and_format() -> None:
    plan = plan_of(load_config(ROUTED))
    assert plan.negative_ttl == 12
    assert plan.forward_query == {"v", "w"}
    assert plan.origins["c"].lean is True  # bearer: signed from the adapter's recipe
    assert plan.origins["c"].signing is not None
    assert plan.origins["a"].signing is None
    assert PLAN_FORMAT == EDGE_PLAN_FORMAT
    raw = edge_plan(load_config(ROUTED))
    with pytest.raises(PlanError, match="format"):
        EdgePlan({**raw, "format": PLAN_FORMAT + 1})
    with pytest.raises(PlanError, match="malformed"):
        EdgePlan({k: v for k, v in raw.items() if k != "routes"})
    with pytest.raises(PlanError, match="not JSON"):
        EdgePlan.from_json("{")


def test_the_plan_carries_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T", "plan-secret-value-0451")
    text = json.dumps(edge_plan(load_config(ROUTED)))
    assert "plan-secret-value-0451" not in text
