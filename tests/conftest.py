"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backorigin.plugins import adapter_plugins

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Let a test register adapters; the registry is re-read from entry points afterwards."""
    adapter_plugins.reset()
    yield
    adapter_plugins.reset()
