"""``backorigin status``: how far the migration has come, object by object."""

from __future__ import annotations

__all__ = ["live_counts", "print_walk_problems", "status"]

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from backorigin.cli.common import (
    EXIT_INVALID,
    WalkArguments,
    bucket_client,
    console,
    exit_on_interrupt,
    exit_unusable_bucket,
    print_problems,
    walk_options,
)
from backorigin.config.units import format_size

if TYPE_CHECKING:
    from rich.console import Console

    from backorigin.config import Config
    from backorigin.prewarm import StatusReport
    from backorigin.transfer.bucket import Bucket

_LABELS = {
    "migrated": "migrated",
    "missing": "missing",
    "stale": "stale",
    "orphaned": "orphaned",
    "application": "the application's own",
    "unchecked": "unchecked",
}


@click.command()
@walk_options(concurrency_help="HEAD requests in flight.")
def status(args: WalkArguments) -> None:
    """Compare the origins with the bucket under PREFIX and count each class of object.

    The origins' listings (mapped to viewer keys through the routes, as prewarm --list does)
    and the bucket's listing are walked side by side: migrated (in the bucket and current),
    missing (not in the bucket), stale (the origin object changed after the copy), orphaned
    (a copy whose origin object is gone), the application's own objects (no backorigin
    provenance; never touched) and unreachable origin objects (no viewer key maps to them).
    Only objects whose freshness the listings leave in doubt cost a HEAD.

    Exits 0 when nothing is missing or stale, 1 otherwise, 2 when something could not be
    examined (the bucket cannot be used; an origin that cannot be listed: give its keys with
    --keys FILE). With --local, the bucket is that of the `backorigin serve` running CONFIG.
    """
    from backorigin.prewarm import BucketUnusable
    from backorigin.prewarm.status import bucket_of

    loaded, client_options = args.load()
    s3 = bucket_client(loaded, client_options, workers=args.concurrency)
    err = console(stderr=True)
    try:
        with exit_on_interrupt(err), args.keys() as keys:
            report = run_status(
                loaded,
                args.prefix,
                keys,
                args.concurrency,
                err,
                live=not args.as_json,
                bucket=bucket_of(loaded, s3),
            )
    except BucketUnusable as exc:
        exit_unusable_bucket(exc, local=args.local, status=EXIT_INVALID)
    if args.as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(report, console(stderr=False), err)
    sys.exit(exit_code(report))


def exit_code(report: StatusReport) -> int:
    """0 when complete, 2 when something could not be examined, 1 otherwise."""
    if not report.ok:
        return EXIT_INVALID
    return 0 if report.complete else 1


def run_status(
    config: Config,
    prefix: str,
    keys: Iterator[str] | None,
    concurrency: int,
    err: Console,
    *,
    live: bool,
    bucket: Bucket | None = None,
) -> StatusReport:
    """Run the comparison with a live display of the counts on standard error.

    Raises:
        BucketUnusable: The bucket cannot be used; nothing was listed.
    """
    from backorigin.prewarm import Survey

    survey = Survey(config, prefix=prefix, keys=keys, concurrency=concurrency, bucket=bucket)
    walk = survey.walk
    with live_counts(
        err,
        survey.report,
        enabled=live and err.is_terminal,
        listed=(lambda: walk.listed) if walk is not None else None,
    ):
        return survey.run()


@contextmanager
def live_counts(
    err: Console,
    report: StatusReport,
    *,
    enabled: bool,
    title: str = "status",
    listed: Callable[[], int] | None = None,
) -> Iterator[None]:
    """A live line of counts per class, redrawn four times a second while the walk runs.

    ``listed`` reads how many objects the origins have listed so far: the listings are
    sorted before the comparison starts, so that number is what moves first.
    """
    if not enabled:
        yield
        return
    from rich.live import Live
    from rich.text import Text

    def render() -> Text:
        counts = "  ".join(
            f"{label} {report.objects[state]}"
            for state, label in _states().items()
            if report.objects[state] or state.value in ("migrated", "missing", "stale")
        )
        origins = f"origins listed {listed()}, " if listed is not None else ""
        return Text(f"{title}: {counts}  ({origins}bucket listed {report.bucket_listed})")

    with Live(console=err, refresh_per_second=4, transient=True, get_renderable=render):
        yield  # the display reads the live counters itself


def _states() -> dict[Any, str]:
    from backorigin.prewarm import State

    return {State(value): label for value, label in _LABELS.items()}


def print_report(report: StatusReport, out: Console, err: Console) -> None:
    """The table of classes with objects, bytes and the share migrated."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"status {report.prefix or '(all keys)'}", box=box.SIMPLE)
    table.add_column("class")
    table.add_column("objects", justify="right")
    table.add_column("bytes", justify="right")
    for state, label in _states().items():
        table.add_row(label, str(report.objects[state]), format_size(report.bytes[state]))
    table.add_row("unreachable", str(report.unreachable), format_size(report.unreachable_bytes))
    out.print(table)
    out.print(
        f"migrated: {report.share_migrated:.1%} of {report.at_origin} origin object(s); "
        f"{report.bucket_heads} HEAD(s) at the bucket, {report.origin_heads} at the origins"
    )
    for state, examples in report.examples.items():
        if state.value in ("application",):
            continue
        err.print(f"{_LABELS[state.value]} ({report.objects[state]}), e.g.:")
        for key, reason in examples[:5]:
            err.print(f"  {key}  {reason}".rstrip())
    print_walk_problems(report, err)
    if report.complete:
        out.print("complete: every origin object has a current copy in the bucket")


def print_walk_problems(report: StatusReport, err: Console) -> None:
    """What kept the comparison from being complete, on standard error."""
    print_problems(
        err,
        not_listable=report.not_listable,
        failures=report.failure_examples,
        error=report.error,
    )
