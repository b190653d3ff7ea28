"""Pieces shared by the commands: options, loading the config, S3 overrides, logging, output."""

from __future__ import annotations

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "WalkArguments",
    "bucket_client",
    "bucket_client_or_exit",
    "bucket_options",
    "concurrency_option",
    "config_argument",
    "console",
    "exit_on_interrupt",
    "exit_unusable_bucket",
    "keys_of",
    "keys_option",
    "load_for_bucket",
    "load_or_exit",
    "local_option",
    "print_problems",
    "s3_overrides",
    "setup_logging",
    "use_local_serve",
    "verbose_option",
    "walk_options",
]

import functools
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from backorigin.config import Config, load_config
from backorigin.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from backorigin.transfer.access import BucketUnusable

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130
F = TypeVar("F", bound=Callable[..., Any])


def config_argument(function: F) -> F:
    """The CONFIG argument every command that needs a configuration takes."""
    decorated: F = click.argument("config", type=click.Path(dir_okay=False, exists=True))(function)
    return decorated


def verbose_option(function: F) -> F:
    """``-v/--verbose``, counted: info with -v, debug with -vv (see :func:`setup_logging`)."""
    decorated: F = click.option(
        "--verbose", "-v", count=True, help="More log output (-vv for debug)."
    )(function)
    return decorated


def bucket_options(function: F) -> F:
    """``--bucket NAME`` and ``--s3-endpoint URL``, the overrides :func:`s3_overrides` applies."""
    function = click.option(
        "--s3-endpoint", help="S3-compatible endpoint URL (overrides bucket.endpoint_url)."
    )(function)
    decorated: F = click.option("--bucket", help="Bucket name (overrides bucket.name).")(function)
    return decorated


def keys_option(help: str) -> Callable[[F], F]:
    """``--keys FILE``: viewer keys, one per line, ``-`` for standard input (:func:`keys_of`)."""

    def decorate(function: F) -> F:
        decorated: F = click.option(
            "--keys",
            "keys_file",
            type=click.Path(exists=True, dir_okay=False, allow_dash=True),
            help=help,
        )(function)
        return decorated

    return decorate


@dataclass(frozen=True)
class WalkArguments:
    """The arguments of a command that walks the origins and the bucket (status, reconcile).

    Attributes:
        config: The config file.
        prefix: Only viewer keys starting with this.
        keys_file: ``--keys``: viewer keys to examine instead of listing the origins.
        as_json: ``--json``.
        concurrency: ``-j/--concurrency``.
        bucket: ``--bucket``.
        s3_endpoint: ``--s3-endpoint``.
        local: ``--local``: the bucket of the ``backorigin serve`` running this config.
        verbose: ``-v`` count.
    """

    config: str
    prefix: str
    keys_file: str | None
    as_json: bool
    concurrency: int
    bucket: str | None
    s3_endpoint: str | None
    local: bool
    verbose: int

    def load(self) -> tuple[Config, dict[str, str]]:
        """Set up logging; the config pointed at the bucket (``--local``'s, or the overrides')
        and the S3 client options, as :func:`load_for_bucket` (exits when invalid)."""
        setup_logging(self.verbose)
        return load_for_bucket(
            self.config, bucket=self.bucket, s3_endpoint=self.s3_endpoint, local=self.local
        )

    def keys(self) -> AbstractContextManager[Iterator[str] | None]:
        """The keys of ``--keys``, read lazily (None without it)."""
        return keys_of(self.keys_file)


def walk_options(*, concurrency_help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``CONFIG [PREFIX]``, ``--keys FILE``, ``--json``, ``-j/--concurrency N`` (16 by default),
    the bucket overrides, ``--local`` and ``-v``, handed to the command as one
    :class:`WalkArguments`.

    The command takes the :class:`WalkArguments` first, then its own options by name.
    """
    names = [f.name for f in fields(WalkArguments)]

    def decorate(function: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(function)
        def command(**params: Any) -> None:
            function(WalkArguments(**{name: params.pop(name) for name in names}), **params)

        # Applied innermost first: the help lists them in the reverse of this order.
        command = verbose_option(command)
        command = local_option(command)
        command = bucket_options(command)
        command = concurrency_option(default=16, help=concurrency_help)(command)
        command = click.option(
            "--json", "as_json", is_flag=True, help="Print one JSON object with every count."
        )(command)
        command = keys_option(
            "Viewer keys to examine, one per line (- for standard input), instead of listing "
            "the origins (for origins that cannot be listed, such as http)."
        )(command)
        command = click.argument("prefix", required=False, default="")(command)
        return config_argument(command)

    return decorate


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


def load_for_bucket(
    path: str,
    *,
    bucket: str | None,
    s3_endpoint: str | None,
    local: bool,
    bucket_needed: bool = True,
) -> tuple[Config, dict[str, str]]:
    """Load the config and point it at the bucket to write: ``--local``'s, or the overrides'.

    Args:
        path: The config file.
        bucket: ``--bucket``.
        s3_endpoint: ``--s3-endpoint``.
        local: ``--local``: the bucket of the ``backorigin serve`` running this config.
        bucket_needed: Whether the command writes to the bucket; when not, a config without
            ``bucket.name`` is fine unless an override is given.

    Returns:
        The config and the S3 client options (credentials of ``serve``'s embedded server).
    """
    loaded = load_or_exit(path)
    if local:
        return use_local_serve(path, loaded, bucket=bucket, s3_endpoint=s3_endpoint)
    if bucket_needed or bucket or s3_endpoint:
        loaded = s3_overrides(loaded, bucket=bucket, endpoint_url=s3_endpoint)
    return loaded, {}


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


def concurrency_option(*, default: int, help: str) -> Callable[[F], F]:
    """``-j/--concurrency N``, the one name every command uses for work done at once.

    ``--jobs`` (fetch's former name) is still accepted, hidden from the help.
    """

    def from_jobs(ctx: click.Context, _param: click.Parameter, value: int | None) -> None:
        if value is not None:
            ctx.params["concurrency"] = value

    def resolve(ctx: click.Context, _param: click.Parameter, value: int | None) -> int:
        if value is not None:
            return value
        found: int = ctx.params.get("concurrency", default)
        return found

    def decorate(function: F) -> F:
        number = click.IntRange(1, 1024)
        function = click.option(
            "--jobs", type=number, hidden=True, expose_value=False, callback=from_jobs
        )(function)
        decorated: F = click.option(
            "--concurrency",
            "-j",
            type=number,
            default=None,
            callback=resolve,
            help=f"{help}  [default: {default}]",
        )(function)
        return decorated

    return decorate


def local_option(function: F) -> F:
    """``--local``: use the bucket of the ``backorigin serve`` running this config."""
    decorated: F = click.option(
        "--local",
        is_flag=True,
        help="Use the bucket of the `backorigin serve` running CONFIG (its embedded S3 "
        "server too, credentials included); no --s3-endpoint or AWS_* variables needed.",
    )(function)
    return decorated


def use_local_serve(
    config_path: str, config: Config, *, bucket: str | None, s3_endpoint: str | None = None
) -> tuple[Config, dict[str, str]]:
    """The config pointed at the bucket a running ``serve`` of ``config_path`` serves.

    Returns:
        The config and the S3 client options (the embedded server's credentials, if any).
    """
    from backorigin.local.state import find_serve_state, serve_state_path

    if bucket or s3_endpoint:
        raise click.UsageError(
            "--local takes the bucket and endpoint from serve; drop --bucket and --s3-endpoint"
        )
    state = find_serve_state(config_path)
    if state is None:
        click.echo(
            f"--local: no `backorigin serve {config_path}` is running (it would have written "
            f"{serve_state_path(config_path)}); start it first, or give --s3-endpoint",
            err=True,
        )
        sys.exit(EXIT_INVALID)
    options: dict[str, str] = {}
    if state.access_key and state.secret_key:
        options = {"aws_access_key_id": state.access_key, "aws_secret_access_key": state.secret_key}
    return s3_overrides(config, bucket=state.bucket, endpoint_url=state.endpoint), options


def bucket_client(config: Config, client_options: dict[str, str], *, workers: int) -> Any:
    """One S3 client for the config's bucket, shared by every worker and part upload and
    pooled to match; ``client_options`` are :func:`load_for_bucket`'s."""
    from backorigin.transfer.bucket import make_s3_client

    return make_s3_client(
        config.bucket,
        max_pool_connections=workers + config.transfer.concurrency + 4,
        **client_options,
    )


def exit_unusable_bucket(
    exc: BucketUnusable, *, local: bool, status: int = EXIT_FAILED
) -> NoReturn:
    """Print why the bucket cannot be used, as one line on stderr, and exit with ``status``.

    Without credentials, the line also says that ``--local`` reaches a running ``serve``.
    """
    from backorigin.transfer.access import Problem

    message = str(exc)
    if exc.problem is Problem.NO_CREDENTIALS and not local:
        message += "; for the bucket of a running `backorigin serve`, add --local"
    click.echo(message, err=True)
    sys.exit(status)


def bucket_client_or_exit(
    config: Config, client_options: dict[str, str], *, workers: int, local: bool = False
) -> Any:
    """An S3 client for the config's bucket, checked once before any work starts.

    A HeadBucket call proves the credentials, the endpoint and the bucket
    (:func:`~backorigin.transfer.access.check_bucket_access`), so a missing credential is one
    clear message up front rather than one failure per key.
    """
    from backorigin.transfer.access import BucketUnusable, check_bucket_access

    s3 = bucket_client(config, client_options, workers=workers)
    try:
        check_bucket_access(s3, str(config.bucket.name))
    except BucketUnusable as exc:
        exit_unusable_bucket(exc, local=local)
    return s3


@contextmanager
def keys_of(keys_file: str | None) -> Iterator[Iterator[str] | None]:
    """The keys of ``--keys`` read lazily (None without it)."""
    from backorigin.prewarm import read_keys

    if keys_file is None:
        yield None
    elif keys_file == "-":
        yield read_keys(sys.stdin)
    else:
        with open(keys_file, encoding="utf-8", newline="") as file:
            yield read_keys(file)


def console(*, stderr: bool) -> Console:
    """A console for messages that carry keys and paths, printed as they are.

    Never wrapped mid-word (tables still fit the width), and never read as rich markup or
    highlighted: a key may contain ``[`` or look like a number.
    """
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, markup=False, soft_wrap=True)


@contextmanager
def exit_on_interrupt(err: Console) -> Iterator[None]:
    """Ctrl-C ends the command with one line and status 130 instead of a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)


def print_problems(
    err: Console,
    *,
    not_listable: Mapping[str, str],
    failures: Sequence[tuple[str, str]] = (),
    error: str | None = None,
) -> None:
    """What kept a walk from being complete: origins not listed, objects not examined, the
    error that stopped it."""
    for origin, reason in not_listable.items():
        err.print(f"origin {origin} was not listed ({reason}); give its keys with --keys")
    for key, reason in failures[:5]:
        err.print(f"could not examine {key}: {reason}")
    if error:
        err.print(f"stopped early: {error}")
