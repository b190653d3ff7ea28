"""``backorigin reconcile``: copy what is missing, refresh stale copies, apply the deletes."""

from __future__ import annotations

__all__ = ["reconcile"]

import json
import sys
import threading
from typing import TYPE_CHECKING

import click

from backorigin.cli.common import (
    EXIT_INVALID,
    WalkArguments,
    bucket_client,
    console,
    exit_on_interrupt,
    exit_unusable_bucket,
    walk_options,
)
from backorigin.cli.status import live_counts, print_walk_problems
from backorigin.config.units import format_size

if TYPE_CHECKING:
    from rich.console import Console

    from backorigin.prewarm import Action, Entry, ReconcileSummary


@click.command()
@click.option(
    "--deletes",
    type=click.Choice(["keep", "delete"]),
    default="keep",
    show_default=True,
    help="What to do with orphaned copies (only copies with backorigin's provenance).",
)
@click.option("--dry-run", is_flag=True, help="Print what would be done; write and send nothing.")
@click.option("--queue-url", help="Send copies and refreshes to this SQS copy queue instead.")
@walk_options(concurrency_help="Copies (or SendMessageBatch calls) and HEAD requests in flight.")
def reconcile(args: WalkArguments, deletes: str, dry_run: bool, queue_url: str | None) -> None:
    """Bring the bucket in step with the origins under PREFIX.

    Compares as status does, then copies what is missing, refreshes stale copies and, with
    --deletes delete, deletes orphaned copies. A refresh or delete replaces only the copy
    backorigin made, conditional on its ETag: an object the application wrote into the
    bucket is never overwritten or deleted (such actions end "refused").

    Locally through the copy engine, or with --queue-url sent to the copy queue for the
    deployed fetchers (deletes are made from here). --dry-run prints the actions, tab-separated
    (action, key, reason), and changes nothing.

    With --local, the bucket is that of the `backorigin serve` running CONFIG.

    Exits 0 when every action succeeded, 1 when some failed, 2 when something could not be
    examined (the bucket cannot be used; an origin that cannot be listed: give its keys with
    --keys FILE).
    """
    from backorigin.prewarm import BucketUnusable, StatusReport
    from backorigin.prewarm import reconcile as run_reconcile

    if args.local and queue_url is not None:
        raise click.UsageError(
            "--local works on serve's bucket here; the deployed fetchers of --queue-url "
            "cannot reach it"
        )
    loaded, client_options = args.load()
    s3 = bucket_client(loaded, client_options, workers=args.concurrency)
    err = console(stderr=True)
    lock = threading.Lock()

    def on_action(action: Action, entry: Entry) -> None:
        if dry_run and not args.as_json:
            with lock:  # data for other tools: tab-separated, never reformatted
                click.echo(f"{action.value}\t{entry.key}\t{entry.reason or ''}".rstrip("\t"))

    shown = StatusReport(prefix=args.prefix)  # the live display's counts
    live = not args.as_json and not dry_run and err.is_terminal
    try:
        with (
            exit_on_interrupt(err),
            args.keys() as keys,
            live_counts(err, shown, enabled=live, title="reconcile"),
        ):
            summary = run_reconcile(
                loaded,
                args.prefix,
                keys=keys,
                deletes="delete" if deletes == "delete" else "keep",
                dry_run=dry_run,
                queue_url=queue_url,
                s3_client=s3,
                concurrency=args.concurrency,
                on_action=on_action,
                on_entry=shown.add,
            )
    except BucketUnusable as exc:
        exit_unusable_bucket(exc, local=args.local, status=EXIT_INVALID)
    if args.as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        print_summary(summary, console(stderr=False), err)
    if not summary.status.ok:
        sys.exit(EXIT_INVALID)
    sys.exit(0 if summary.ok else 1)


def print_summary(summary: ReconcileSummary, out: Console, err: Console) -> None:
    """What was found and what was done, as a table."""
    from rich import box
    from rich.table import Table

    from backorigin.prewarm import Action, ActionResult, State

    report = summary.status
    title = "reconcile" + (" (dry run)" if summary.dry_run else "")
    if summary.queue_url:
        title += f" via {summary.queue_url}"
    table = Table(title=title, box=box.SIMPLE)
    table.add_column("action")
    table.add_column("planned", justify="right")
    results = (
        [ActionResult.PLANNED]
        if summary.dry_run
        else [ActionResult.DONE, ActionResult.ENQUEUED, ActionResult.REFUSED, ActionResult.FAILED]
    )
    for result in results:
        table.add_column(result.value, justify="right")
    found = {
        Action.COPY: State.MISSING,
        Action.REFRESH: State.STALE,
        Action.DELETE: State.ORPHANED,
    }
    for action, state in found.items():
        label = f"{action.value} ({report.objects[state]} {state.value})"
        if action is Action.DELETE and summary.deletes == "keep":
            label += ", kept"
        table.add_row(
            label,
            str(summary.planned[action]),
            *(str(summary.results[(action, r)]) for r in results),
        )
    out.print(table)
    out.print(
        f"{report.objects[State.MIGRATED]} object(s) already current; "
        f"{format_size(summary.bytes_copied)} copied; "
        f"{report.objects[State.APPLICATION]} of the application's own left alone"
    )
    for action, key, reason in summary.examples:
        err.print(f"{action.value} {key}: {reason}")
    print_walk_problems(report, err)
