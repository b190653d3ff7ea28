"""The ``backorigin`` command group and its small commands (``validate``, ``schema``)."""

from __future__ import annotations

__all__ = ["cli", "main"]

import sys
import warnings

import click

from backorigin import __version__
from backorigin.cli.common import EXIT_INVALID
from backorigin.cli.fetch import fetch
from backorigin.cli.prewarm import prewarm
from backorigin.cli.reconcile import reconcile
from backorigin.cli.serve import serve
from backorigin.cli.status import status
from backorigin.config import deployability_problems, dump_json_schema, load_config
from backorigin.errors import ConfigError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="backorigin")
def cli() -> None:
    """Migrate an object store onto S3 behind CloudFront, lazily and verified."""
    # Deprecations in a config file are for the person running the command: one plain line,
    # not Python's "file:line: FutureWarning:" form pointing into pydantic.
    warnings.formatwarning = _plain_warning


def _plain_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    return f"warning: {message}\n"


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--deploy",
    is_flag=True,
    help="Also fail on settings CloudFront would refuse once deployed (IP-literal or local "
    "origin hosts, ports, header names it does not let the edge function set).",
)
def validate(files: tuple[str, ...], deploy: bool) -> None:
    """Check configuration FILES; print ok, or every problem with its path and line.

    A valid config may still be one CloudFront refuses at run time (an origin on 127.0.0.1 is
    right for ``serve``, wrong once deployed): those problems are printed as warnings
    ("not deployable: ..."), or, with --deploy, as errors. Exits 0 when every file is valid
    (and, with --deploy, deployable) and 2 otherwise. Use - to read standard input.
    """
    failed = False
    for name in files:
        label = f"{name}: " if len(files) > 1 else ""
        try:
            if name == "-":
                config = load_config(sys.stdin.read())
            else:
                config = load_config(click.format_filename(name))
        except ConfigError as exc:
            failed = True
            # The error names its file itself ("invalid configuration in NAME"), except stdin's.
            click.echo(f"{label if exc.source is None else ''}{exc}", err=True)
            continue
        problems = deployability_problems(config)
        for problem in problems:
            kind = "error" if deploy else "warning"
            click.echo(f"{label}{kind}: {problem}", err=True)
        if deploy and problems:
            failed = True
        else:
            click.echo(f"{label}ok")
    if failed:
        sys.exit(EXIT_INVALID)


@cli.command()
@click.option(
    "--format",
    "output",
    type=click.Choice(["json", "markdown"]),
    default="json",
    show_default=True,
    help="JSON Schema, or the Markdown reference generated from it.",
)
def schema(output: str) -> None:
    """Print the JSON Schema of the configuration format (with every registered origin type)."""
    if output == "markdown":
        from backorigin.config.reference import config_reference

        click.echo(config_reference(), nl=False)
    else:
        click.echo(dump_json_schema(), nl=False)


cli.add_command(fetch)
cli.add_command(prewarm)
cli.add_command(status)
cli.add_command(reconcile)
cli.add_command(serve)


def main() -> None:
    """Entry point of the ``backorigin`` console script."""
    cli(prog_name="backorigin")
