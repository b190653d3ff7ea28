"""Loading a config from a file, YAML text or a mapping, with path- and line-carrying errors."""

from __future__ import annotations

__all__ = ["config_json_schema", "dump_json_schema", "load_config"]

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, ValidationError, create_model
from pydantic_core import ErrorDetails

from backorigin.config.models import Config, origin_types
from backorigin.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    import yaml

ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | Config


def load_config(source: ConfigSource) -> Config:
    """Load and validate a configuration.

    Args:
        source: A path (``Path``, or a one-line string naming a file), YAML text, a mapping,
            or an already loaded :class:`Config` (returned as is).

    Raises:
        ConfigError: listing every problem with its path and, for YAML, its line.
    """
    if isinstance(source, Config):
        return source
    if isinstance(source, Mapping):
        return _validate(dict(source), None, None)
    name: str | None = None
    if isinstance(source, os.PathLike) or (
        "\n" not in source and not source.lstrip().startswith("{")
    ):
        path = Path(source)
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                [ConfigIssue("", f"cannot read {path}: {exc.strerror}")], name
            ) from exc
    else:
        text = source
    data, root = _parse_yaml(text, name)
    return _validate(data, root, name)


def _parse_yaml(text: str, name: str | None) -> tuple[Any, yaml.Node | None]:
    import yaml  # deferred: baked configs are JSON, and a cold start should not pay for YAML

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError([ConfigIssue("", "the document is empty")], name)
        duplicates = list(_duplicate_keys(root, ()))
        if duplicates:
            raise ConfigError(duplicates, name)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([ConfigIssue("", f"invalid YAML: {problem}", line)], name) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue("", f"invalid YAML: {exc}")], name) from None
    finally:
        loader.dispose()
    return data, root


def _duplicate_keys(node: yaml.Node, path: tuple[int | str, ...]) -> Any:
    """Yield an issue for every mapping key that appears twice (YAML would keep the last)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                yield ConfigIssue(
                    _format_path((*path, key)),
                    "duplicate key; it appears more than once in this mapping",
                    key_node.start_mark.line + 1,
                )
            seen.add(key)
            yield from _duplicate_keys(value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, index))


def _validate(data: Any, root: yaml.Node | None, name: str | None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue("", "the document must be a mapping of settings")], name)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        issues = [_issue(error, data, root) for error in exc.errors(include_input=False)]
        raise ConfigError(issues, name) from None


def _issue(error: ErrorDetails, data: Any, root: yaml.Node | None) -> ConfigIssue:
    loc = _without_tags(tuple(error["loc"]), data)
    message = error["msg"]
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing":
        message = "required field is missing"
    elif kind in ("model_attributes_type", "model_type", "dict_type"):
        message = _not_a_mapping(loc, _value_at(data, loc))
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        # Point at the discriminator field itself (e.g. ``origins[1].auth.mode``).
        field = str(ctx.get("discriminator", "")).strip("'")
        if field:
            loc = (*loc, field)
        if kind == "union_tag_not_found":
            message = f"required; one of: {ctx.get('expected_tags', '')}".rstrip(": ")
        else:
            message = f"unknown value {ctx.get('tag', '')!r}; valid: {ctx.get('expected_tags', '')}"
    return ConfigIssue(_format_path(loc), message, _line_of(root, loc))


def _value_at(data: Any, loc: tuple[int | str, ...]) -> Any:
    """The input value at ``loc``, or None when the location is not in the data."""
    node = data
    for part in loc:
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_list or (isinstance(node, dict) and part in node)):
            return None
        node = node[part]
    return node


def _not_a_mapping(loc: tuple[int | str, ...], value: Any) -> str:
    """Say what a settings block should look like when something else was written."""
    field = loc[-1] if loc else ""
    if field == "auth":
        # Echo the value only when it reads like a mode name: a pasted secret must not be.
        mode = value if isinstance(value, str) and re.fullmatch(r"[a-z_]{1,24}", value) else None
        return f"auth must be a mapping such as {{mode: {mode or 'anonymous'}}}"
    kind = "a list" if isinstance(value, list) else "a single value"
    return f"must be a mapping of settings (name: value lines), not {kind}"


def _without_tags(loc: tuple[int | str, ...], data: Any) -> tuple[int | str, ...]:
    """Drop the union tags pydantic puts into locations (``auth.basic.password``).

    A tag is a location part that is not a key of the mapping at that point but is one of its
    values (the discriminator's, e.g. ``mode: basic``); the last part is always kept because a
    missing field is legitimately absent from the mapping.
    """
    out: list[int | str] = []
    node = data
    for index, part in enumerate(loc):
        is_last = index == len(loc) - 1
        is_tag = (
            isinstance(node, dict)
            and part not in node
            and part in [v for v in node.values() if isinstance(v, str)]
        )
        if is_tag and not is_last:
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _format_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The YAML line of the deepest node ``loc`` reaches (the parent when a key is missing)."""
    if root is None:
        return None
    import yaml

    node = root
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    child = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the config format, including every registered origin type."""
    types = origin_types()
    union: Any = Annotated[_union(types), Field(discriminator="type")]
    schema_model = create_model(
        "Config",
        __base__=Config,
        __doc__=Config.__doc__,
        origins=(list[union], Field(min_length=1, description="The old stores, at least one.")),
    )
    schema = schema_model.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "backorigin configuration"
    return schema


def _union(types: dict[str, Any]) -> Any:
    members = tuple(types[name] for name in sorted(types))
    union: Any = members[0]
    for member in members[1:]:
        union = union | member
    return union


def dump_json_schema() -> str:
    """The JSON Schema as stable, pretty-printed JSON text (what ``backorigin schema`` prints)."""
    return json.dumps(config_json_schema(), indent=2, sort_keys=True) + "\n"
