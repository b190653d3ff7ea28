"""Human-friendly sizes (``16MiB``) and durations (``30s``) for config fields."""

from __future__ import annotations

__all__ = [
    "ByteSize",
    "Duration",
    "format_rate",
    "format_size",
    "parse_duration",
    "parse_size",
]

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_size(value: Any) -> int:
    """Parse ``16MiB``, ``5 TiB``, ``1.5GB`` or a plain integer into bytes.

    Decimal units (``KB``, ``MB``, …) are powers of 1000; binary ones (``KiB``, …) of 1024.
    """
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like '16MiB'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError("a size must be a number of bytes or a string like '16MiB'")
    match = _SIZE_RE.match(value)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(
            f"cannot read {value!r} as a size; use bytes or a unit: "
            "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"
        )
    number = float(match.group(1))
    return int(number * _SIZE_UNITS[unit])


def parse_duration(value: Any) -> float:
    """Parse ``30s``, ``5m``, ``1h30m``, ``250ms``, ``2d`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be seconds or a string like '30s'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("a duration must be seconds or a string like '30s'")
    text = value.strip().replace(" ", "")
    if not text or _DURATION_RE.sub("", text) != "":
        raise ValueError(
            f"cannot read {value!r} as a duration; use e.g. '30s', '5m', '1h30m', '250ms'"
        )
    return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_RE.findall(text))


def format_size(size: float) -> str:
    """Render a byte count with a binary unit, e.g. ``16.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_rate(nbytes: float, seconds: float) -> str | None:
    """Render a transfer rate with a decimal unit, e.g. ``10.4 MB/s`` or ``512 B/s``.

    The unit follows the size, so a small copy reads ``36.0 KB/s`` rather than ``0.0 MB/s``.
    None when nothing was moved or no time was measured: there is no rate to state.
    """
    if nbytes <= 0 or seconds <= 0:
        return None
    rate = nbytes / seconds
    for unit in ("B/s", "KB/s", "MB/s", "GB/s"):
        if rate < 1000 or unit == "GB/s":
            return f"{rate:.0f} {unit}" if unit == "B/s" else f"{rate:.1f} {unit}"
        rate /= 1000
    raise AssertionError("unreachable")


ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {
                    "type": "string",
                    "pattern": r"^\s*\d+(\.\d+)?\s*([KkMmGgTt][Ii]?[Bb]?|[Bb])?\s*$",
                },
            ],
            "description": "bytes, or a size such as '16MiB' (binary) or '16MB' (decimal)",
        }
    ),
]
"""A number of bytes, accepting human sizes in config files."""

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda v: v, return_type=float),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"},
            ],
            "description": "seconds, or a duration such as '30s', '5m', '1h30m', '250ms'",
        }
    ),
]
"""A duration in seconds, accepting human durations in config files."""
