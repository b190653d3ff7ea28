"""The configuration reference, rendered as Markdown from the JSON Schema.

Generated rather than written, so it can never disagree with the models; ``make schema`` writes
``docs/CONFIG.md`` and a test checks that the committed file is current.
"""

from __future__ import annotations

__all__ = ["config_reference"]

import re
from typing import Any

from backorigin.config.loader import config_json_schema


def _type(spec: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "const" in spec:
        return f"`{spec['const']!r}`".replace("'", '"')
    if "enum" in spec:
        return " | ".join(f"`{value}`" for value in spec["enum"])
    for key in ("anyOf", "oneOf"):
        if key in spec:
            parts = [_type(option, defs) for option in spec[key]]
            return " | ".join(dict.fromkeys(parts))
    kind = spec.get("type")
    if kind == "array":
        return f"list of {_type(spec.get('items', {}), defs)}"
    if kind == "object" and "additionalProperties" in spec:
        value = spec["additionalProperties"]
        return f"map of {_type(value, defs) if isinstance(value, dict) else 'any'}"
    if isinstance(kind, str):
        return kind
    return "any"


def _default(spec: dict[str, Any]) -> str:
    if "default" not in spec:
        return ""
    value = spec["default"]
    if value in ("", [], {}):
        return f"`{value!r}`".replace("'", '"')
    return f"`{value}`"


def _prose(text: str) -> str:
    """Docstring markup to Markdown: ``code`` → `code`, :func:`x` → `x`."""
    return re.sub(r":\w+:`([^`]+)`", r"`\1`", text).replace("``", "`")


def _cell(text: str) -> str:
    return " ".join(_prose(text).replace("|", "\\|").split())


def _table(name: str, spec: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if spec.get("description"):
        lines += [" ".join(_prose(spec["description"]).split()), ""]
    properties: dict[str, Any] = spec.get("properties", {})
    if not properties:
        return lines
    required = set(spec.get("required", []))
    lines += ["| field | type | required | default | description |", "|---|---|---|---|---|"]
    for field, field_spec in properties.items():
        described = field_spec.get("description", "")
        if not described and "$ref" in field_spec:
            described = defs.get(field_spec["$ref"].rsplit("/", 1)[-1], {}).get("description", "")
        lines.append(
            f"| `{field}` | {_cell(_type(field_spec, defs))} | "
            f"{'yes' if field in required else ''} | {_cell(_default(field_spec))} | "
            f"{_cell(described)} |"
        )
    lines.append("")
    return lines


def config_reference() -> str:
    """The Markdown reference of every section, origin type and auth mode."""
    schema = config_json_schema()
    defs: dict[str, Any] = schema.get("$defs", {})
    lines = [
        "# Configuration reference",
        "",
        "Generated from the JSON Schema (`backorigin schema`) by `make schema`; do not edit.",
        "Sizes accept `16MiB`-style units, durations `30s`-style ones; secrets are references",
        "(`{secret: {env: NAME}}`, `{secret: {file: PATH}}`,",
        "`{secret: {aws_secretsmanager: ARN_OR_NAME, key: FIELD}}`), never values.",
        "",
        "## The document",
        "",
    ]
    lines += _table("Config", schema, defs)[2:]
    lines += ["## Sections and types", ""]
    for name in sorted(defs):
        lines += _table(name, defs[name], defs)
    return "\n".join(lines).rstrip() + "\n"
