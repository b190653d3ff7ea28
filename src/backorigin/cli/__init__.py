"""The ``backorigin`` command line."""

from backorigin.cli.main import cli, main

__all__ = ["cli", "main"]
