"""Pieces shared by the commands: loading the config, S3 overrides, logging."""

from __future__ import annotations

__all__ = ["EXIT_INVALID", "config_argument", "load_or_exit", "s3_overrides", "setup_logging"]

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from backorigin.config import Config, load_config
from backorigin.errors import ConfigError

EXIT_INVALID = 2
F = TypeVar("F", bound=Callable[..., Any])


def config_argument(function: F) -> F:
    """The CONFIG argument every command that needs a configuration takes."""
    decorated: F = click.argument("config", type=click.Path(dir_okay=False, exists=True))(function)
    return decorated


def load_or_exit(path: str) -> Config:
    """Load the config or print its problems and exit with status 2.

    Origins without ``endpoint_url`` take the one their SDK's environment variable names
    (``STORAGE_EMULATOR_HOST``, ``AWS_ENDPOINT_URL_S3``, ...), so that reading an origin and
    sending viewers to it go to the same place; each such origin is named on stderr.
    """
    from backorigin.adapters import apply_environment_endpoints
    from backorigin.errors import MissingExtra, RegistryError

    try:
        config, notes = apply_environment_endpoints(load_config(path))
    except (ConfigError, MissingExtra, RegistryError) as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_INVALID)
    for note in notes:
        click.echo(note, err=True)
    return config


def s3_overrides(config: Config, *, bucket: str | None, endpoint_url: str | None) -> Config:
    """The config with the bucket name and/or S3 endpoint replaced, revalidated."""
    changes: dict[str, Any] = {}
    if bucket:
        changes["name"] = bucket
    if endpoint_url:
        changes["endpoint_url"] = endpoint_url
    if not changes:
        if not config.bucket.name:
            click.echo("bucket.name is not set in the config; pass --bucket", err=True)
            sys.exit(EXIT_INVALID)
        return config
    data = config.model_dump(by_alias=True)
    data["bucket"].update(changes)
    try:
        return load_config(data)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_INVALID)


def setup_logging(verbose: int) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
