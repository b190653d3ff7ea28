"""Facts every part of backorigin shares have one definition: the default origin and the
reserved key prefix. Each user asks the definition (checked on behaviour and on the source)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from backorigin import RESERVED_PREFIX
from backorigin.bundling import edge_origin_name, edge_plan
from backorigin.config import Config, load_config
from backorigin.handlers.plan import EdgePlan
from backorigin.keys import RESERVED_PREFIX as KEYS_RESERVED_PREFIX
from backorigin.keys import Router
from backorigin.prewarm.listing import viewer_keys
from backorigin.types import RESERVED_PREFIX as TYPES_RESERVED_PREFIX

SRC = Path(__file__).resolve().parent.parent / "src" / "backorigin"

NO_ROUTES = load_config("""\
bucket: {name: media-new}
origins:
  - {name: first, type: http, base_url: "https://first.example.com/"}
  - {name: second, type: http, base_url: "https://second.example.com/"}
""")
ROUTED = load_config("""\
bucket: {name: media-new}
origins:
  - {name: first, type: http, base_url: "https://first.example.com/"}
  - {name: second, type: http, base_url: "https://second.example.com/"}
routes:
  - {prefix: docs/, origin: second}
  - {prefix: "", origin: first}
""")


def test_without_routes_the_first_origin_is_the_default() -> None:
    assert NO_ROUTES.default_origin == "first"


def test_with_routes_the_first_routes_origin_is_the_default() -> None:
    assert ROUTED.default_origin == "second"


@pytest.mark.parametrize("config", [NO_ROUTES, ROUTED], ids=["no-routes", "routed"])
def test_deployment_and_edge_agree_with_the_config(config: Config) -> None:
    assert edge_origin_name(config) == config.default_origin
    assert next(iter(config.edge_origin_roles())) == config.default_origin


def test_unrouted_keys_go_to_the_default_origin_everywhere() -> None:
    """Router, the baked edge plan and prewarm's listing send every key to the default origin
    when there are no routes."""
    expected = NO_ROUTES.default_origin
    assert Router(NO_ROUTES).route("a/b.txt").primary.origin == expected
    plan = EdgePlan(edge_plan(NO_ROUTES))
    assert plan.default_origin == expected
    assert plan.route("a/b.txt").primary.origin == expected
    # The listing maps origin keys back to viewer keys: only the default origin's keys count.
    router = Router(NO_ROUTES)
    assert viewer_keys(NO_ROUTES, router, expected, "a/b.txt") == ["a/b.txt"]
    assert viewer_keys(NO_ROUTES, router, "second", "a/b.txt") == []


def test_the_reserved_prefix_is_defined_once() -> None:
    assert KEYS_RESERVED_PREFIX is RESERVED_PREFIX is TYPES_RESERVED_PREFIX
    assert RESERVED_PREFIX == ".backorigin/"


def test_keys_stay_lean() -> None:
    """The edge function's cold path imports keys: reading the prefix loads nothing more."""
    code = "import sys, json, backorigin.keys; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    assert "backorigin.types" not in loaded
    assert "typing" not in loaded


def _sources() -> list[tuple[str, ast.Module]]:
    return [
        (str(path.relative_to(SRC)), ast.parse(path.read_text(), str(path)))
        for path in sorted(SRC.rglob("*.py"))
    ]


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings or bare string statements."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


def test_no_module_decides_the_default_origin_itself() -> None:
    """``origins[0]`` and ``routes[0]`` appear only in the definition (the config model)."""
    offenders = []
    for name, tree in _sources():
        if name == "config/models.py":
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr in ("origins", "routes")
                and isinstance(node.slice, ast.Constant)
                and node.slice.value == 0
            ):
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


def test_no_module_spells_the_reserved_prefix_itself() -> None:
    offenders = []
    for name, tree in _sources():
        if name == "__init__.py":
            continue
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and ".backorigin/" in node.value
                and id(node) not in skip
            ):
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []
