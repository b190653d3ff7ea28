"""``backorigin prewarm``: copy a whole key set into S3, locally or through the copy queue.

Arguments, progress and the summary only: the run itself is :func:`backorigin.prewarm.prewarm`.
"""

from __future__ import annotations

__all__ = ["prewarm"]

import contextlib
import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from backorigin.cli.common import (
    EXIT_INTERRUPTED,
    bucket_client,
    bucket_options,
    concurrency_option,
    config_argument,
    console,
    exit_unusable_bucket,
    keys_option,
    load_for_bucket,
    local_option,
    print_problems,
    setup_logging,
    verbose_option,
)
from backorigin.config.units import format_rate, format_size

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, Task
    from rich.text import Text

    from backorigin.config import Config
    from backorigin.keys import Target
    from backorigin.prewarm import Job, Outcome, PrewarmSummary


@click.command()
@config_argument
@keys_option("File of viewer keys, one per line (- for standard input).")
@click.option(
    "--list",
    "list_prefix",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[PREFIX]",
    help="List the origins for every viewer key under PREFIX (all keys without one).",
)
@concurrency_option(
    default=16,
    help="Keys copied at once (local) or SendMessageBatch calls in flight (--queue-url).",
)
@click.option("--queue-url", help="Enqueue copy jobs to this SQS queue instead of copying.")
@click.option("--dry-run", is_flag=True, help="Print the jobs; read nothing from S3, send nothing.")
@click.option(
    "--failed-out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the keys worth retrying here (the format --keys reads).",
)
@bucket_options
@local_option
@verbose_option
def prewarm(
    config: str,
    keys_file: str | None,
    list_prefix: str | None,
    concurrency: int,
    queue_url: str | None,
    dry_run: bool,
    failed_out: str | None,
    bucket: str | None,
    s3_endpoint: str | None,
    local: bool,
    verbose: int,
) -> None:
    """Copy every key of a key list, or every object the origins list, into the bucket.

    Give the keys with --keys FILE (viewer keys, one per line; - reads standard input) or let
    --list [PREFIX] walk the origins (gcs, azure and s3 origins can be listed; http cannot).
    Routes, rewrites and fallbacks apply as on the serving path: listed origin keys are
    mapped back to the viewer keys that reach them.

    Locally, --concurrency workers copy through the copy engine, with a live progress bar on
    a terminal (plain lines every few seconds otherwise); the bucket and the credentials are
    checked once before the first copy. --local copies into the bucket of the `backorigin
    serve` running CONFIG. The
    bucket is listed once per batch of keys (no HEAD per key), so an object already in S3 is
    skipped cheaply and running the command again after an interruption continues where it
    stopped; with --list, a copy whose size or origin version
    differs from the listing is reported as stale (never overwritten). A summary follows; the
    keys worth retrying go to --failed-out. Exits 0 when every key ended copied or exists, 1
    otherwise (2 for a bad config or usage, 130 when interrupted).

    With --queue-url the jobs are sent to the copy queue in batches of ten instead, for the
    deployed fetchers to copy; keys that could not be sent go to --failed-out.

    From Python, the same run is backorigin.prewarm.prewarm(config, prefix, keys=...).
    """
    from backorigin.prewarm import count_keys, read_keys

    setup_logging(verbose)
    if (keys_file is None) == (list_prefix is None):
        raise click.UsageError("give exactly one of --keys FILE and --list [PREFIX]")
    if keys_file and failed_out and _same_file(keys_file, failed_out):
        raise click.UsageError("--failed-out must not be the --keys file (it is rewritten)")
    if local and queue_url is not None:
        raise click.UsageError("--local copies here; it cannot be used with --queue-url")
    loaded, client_options = load_for_bucket(
        config,
        bucket=bucket,
        s3_endpoint=s3_endpoint,
        local=local,
        bucket_needed=queue_url is None and not dry_run,
    )
    err = console(stderr=True)
    out = console(stderr=False)
    with contextlib.ExitStack() as stack:
        keys: Iterable[str] | None = None
        total: int | None = None
        if keys_file == "-":
            keys = read_keys(sys.stdin)
        elif keys_file is not None:
            total = count_keys(keys_file)
            keys = read_keys(stack.enter_context(open(keys_file, encoding="utf-8", newline="")))
        if dry_run:
            status = _dry_run(loaded, keys, list_prefix, queue_url, err)
        else:
            status = _run(
                loaded,
                client_options,
                local,
                keys,
                total,
                list_prefix,
                queue_url,
                concurrency,
                failed_out,
                out,
                err,
            )
    sys.exit(status)


def _exit_status(summary: PrewarmSummary) -> int:
    """0 when the run did all it was asked, 130 when interrupted, 1 otherwise."""
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return 0 if summary.ok else 1


def _run(
    config: Config,
    client_options: dict[str, str],
    local: bool,
    keys: Iterable[str] | None,
    total: int | None,
    list_prefix: str | None,
    queue_url: str | None,
    concurrency: int,
    failed_out: str | None,
    out: Console,
    err: Console,
) -> int:
    """A local or queue run with a progress display, then its summary."""
    from backorigin.prewarm import BucketUnusable, QueueUnusable, prewarm

    s3 = None
    if queue_url is None:
        # One client for every worker and every part upload; prewarm checks the bucket once
        # with it, so missing credentials stop the run before the first key instead of each.
        s3 = bucket_client(config, client_options, workers=concurrency)
    label = "prewarm" if queue_url is None else "enqueue"
    progress = _progress(err, with_bytes=queue_url is None)
    task = progress.add_task(label, total=total, bytes=0)
    taken = 0
    copied = 0
    lock = threading.Lock()

    def on_job(job: Job, target: Target | None) -> None:
        nonlocal taken
        taken += 1
        if list_prefix is not None and taken % 1000 == 0:
            progress.update(task, description=f"{label} (listed {taken})")

    def on_outcome(outcome: Outcome) -> None:
        nonlocal copied
        with lock:
            copied += outcome.bytes
            progress.update(task, advance=1, bytes=copied)

    try:
        with progress:
            summary = prewarm(
                config,
                list_prefix or "",
                keys=keys,
                concurrency=concurrency,
                queue_url=queue_url,
                s3_client=s3,
                failed_out=failed_out,
                on_job=on_job,
                on_reject=lambda key, reason: progress.update(task, advance=1),
                on_outcome=on_outcome,
                on_sent=lambda sent, bad: progress.update(task, advance=sent + bad),
                on_total=lambda count: progress.update(task, total=count, description=label),
            )
    except QueueUnusable as exc:
        err.print(str(exc))
        return 1
    except BucketUnusable as exc:
        exit_unusable_bucket(exc, local=local)
    if queue_url is None:
        _local_summary(summary, out, err)
    else:
        _enqueue_summary(summary, out, err)
    if summary.retry and failed_out:
        err.print(
            f"{summary.retry} key(s) to retry written to {failed_out} "
            f"(run again with --keys {failed_out})"
        )
    return _exit_status(summary)


def _dry_run(
    config: Config,
    keys: Iterable[str] | None,
    list_prefix: str | None,
    queue_url: str | None,
    err: Console,
) -> int:
    from backorigin.prewarm import prewarm

    def on_job(job: Job, target: Target | None) -> None:
        assert target is not None  # a dry run routes every job
        size = job.info.size if job.info is not None else "-"
        # data for other tools: tab-separated, never reformatted
        click.echo(f"{job.key}\t{target.origin}\t{target.key}\t{size}")

    def on_reject(key: str, reason: str) -> None:
        err.print(f"{key}: {reason}")

    summary = prewarm(
        config,
        list_prefix or "",
        keys=keys,
        dry_run=True,
        queue_url=queue_url,
        on_job=on_job,
        on_reject=on_reject,
    )
    where = f"enqueued to {queue_url}" if queue_url else "copied"
    err.print(
        f"dry run: {summary.planned} job(s) would be {where}; nothing was read from S3 or sent"
    )
    _walk_notes(summary, err)
    return _exit_status(summary)


def _same_file(a: str, b: str) -> bool:
    if a == "-":
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


# --- display ----------------------------------------------------------------------------------


PLAIN_PROGRESS_SECONDS = 10.0
"""Without a terminal, how often a plain progress line is printed."""


def _progress(err: Console, *, with_bytes: bool = True) -> Progress:
    """Objects done of total, bytes copied, objects/s and the byte rate, ETA.

    A live bar on a terminal; otherwise (a log file, a pipe, CI) no live display, whose
    redrawn lines would pile up and wrap there, but a plain line every
    :data:`PLAIN_PROGRESS_SECONDS`.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    def rates(task: Task) -> str:
        elapsed = task.elapsed or 0.0
        per_second = task.completed / elapsed if elapsed > 0 else 0.0
        if not with_bytes:
            return f"{per_second:7.1f}/s"
        copied = int(task.fields.get("bytes", 0))
        rate = format_rate(copied, elapsed) or "-"
        return f"{format_size(copied):>9} {per_second:6.0f} obj/s {rate:>10}"

    class Rates(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(rates(task))

    class PlainLines(Progress):
        def __init__(self) -> None:
            super().__init__(console=err, disable=True)
            self._stop = threading.Event()
            self._reporter = threading.Thread(target=self._report, daemon=True)

        def __enter__(self) -> PlainLines:
            self._reporter.start()
            return self

        def __exit__(self, *exc: object) -> None:
            self._stop.set()
            self._reporter.join()

        def _report(self) -> None:
            while not self._stop.wait(PLAIN_PROGRESS_SECONDS):
                for task in self.tasks:
                    total = f"/{task.total:.0f}" if task.total is not None else ""
                    err.print(
                        f"{task.description}: {task.completed:.0f}{total} "
                        f"{' '.join(rates(task).split())}"
                    )

    if not err.is_terminal:
        return PlainLines()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        Rates(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        refresh_per_second=4,
        redirect_stdout=False,
        redirect_stderr=False,
    )


def _rate(count: int, nbytes: int, elapsed: float) -> tuple[str, str]:
    """Objects per second and the byte rate (``-`` when there is none to state)."""
    if elapsed <= 0:
        return "-", "-"
    return f"{count / elapsed:.1f}", format_rate(nbytes, elapsed) or "-"


def _local_summary(summary: PrewarmSummary, out: Console, err: Console) -> None:
    from rich import box
    from rich.table import Table

    from backorigin.prewarm import Finding, KeyOutcome
    from backorigin.transfer import CopyOutcome

    labels: dict[KeyOutcome, str] = {
        CopyOutcome.COPIED: "copied",
        CopyOutcome.EXISTS: "exists",
        Finding.STALE: "stale (not overwritten)",
        CopyOutcome.NOT_FOUND: "not found",
        CopyOutcome.TOO_LARGE: "too large",
        CopyOutcome.IN_PROGRESS: "in progress elsewhere",
        Finding.INVALID: "invalid key",
        CopyOutcome.FAILED: "failed",
    }
    tally, walk, elapsed = summary.tally, summary.listing, summary.seconds
    table = Table(
        title="prewarm" + (" (interrupted)" if summary.interrupted else ""),
        box=box.SIMPLE,
        show_header=False,
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    for status, label in labels.items():
        if (
            status in (Finding.STALE, CopyOutcome.IN_PROGRESS, Finding.INVALID)
            and not tally.counts[status]
        ):
            continue  # rare; shown only when they happened
        table.add_row(label, str(tally.counts[status]))
    per_second, byte_rate = _rate(tally.done, tally.bytes, elapsed)
    table.add_row("bytes", f"{tally.bytes} ({format_size(tally.bytes)})")
    table.add_row("seconds", f"{elapsed:.1f}")
    table.add_row("objects/s", per_second)
    table.add_row("rate", byte_rate)
    if walk is not None:
        table.add_row("listed at the origins", str(walk.listed))
        table.add_row("unreachable (skipped)", str(walk.unreachable))
        if walk.aliases:
            table.add_row("extra viewer keys (aliases)", str(walk.aliases))
    out.print(table)
    for status, examples in tally.examples.items():
        shown = f", the first {len(examples)}" if tally.counts[status] > len(examples) else ""
        err.print(f"{labels[status]} ({tally.counts[status]}{shown}):")
        for key, reason in examples:
            err.print(f"  {key}  {reason}")
    _walk_notes(summary, err)


def _enqueue_summary(summary: PrewarmSummary, out: Console, err: Console) -> None:
    from rich import box
    from rich.table import Table

    tally, walk, elapsed = summary.sent, summary.listing, summary.seconds
    title = f"prewarm via {summary.queue_url}" + (" (interrupted)" if summary.interrupted else "")
    table = Table(
        title=title,
        box=box.SIMPLE,
        show_header=False,
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("enqueued", str(tally.sent))
    table.add_row("failed to enqueue", str(tally.failed))
    table.add_row("rejected (invalid key or no route)", str(summary.rejected))
    table.add_row("SendMessageBatch calls", str(tally.batches))
    table.add_row("seconds", f"{elapsed:.1f}")
    table.add_row("jobs/s", _rate(tally.sent, 0, elapsed)[0])
    if walk is not None:
        table.add_row("listed at the origins", str(walk.listed))
        table.add_row("unreachable (skipped)", str(walk.unreachable))
    out.print(table)
    if tally.examples:
        err.print("failed to enqueue, first ones:")
        for key, reason in tally.examples:
            err.print(f"  {key}  {reason}")
    for key, reason in summary.rejected_examples:
        err.print(f"rejected: {key}  {reason}")
    _walk_notes(summary, err)


def _walk_notes(summary: PrewarmSummary, err: Console) -> None:
    """Why the run stopped early, origins not listed, listed objects no viewer key reaches."""
    walk = summary.listing
    print_problems(
        err, not_listable=walk.not_listable if walk is not None else {}, error=summary.error
    )
    if walk is not None and walk.unreachable_examples:
        err.print(
            f"{walk.unreachable} listed object(s) no viewer key reaches (no route leads there), "
            "e.g.:"
        )
        for origin, key in walk.unreachable_examples[:5]:
            err.print(f"  {origin}: {key}")
