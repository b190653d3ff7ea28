"""``backorigin prewarm``: copy a whole key set into S3, locally or through the copy queue."""

from __future__ import annotations

__all__ = ["prewarm"]

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from backorigin.cli.common import (
    bucket_client_or_exit,
    concurrency_option,
    config_argument,
    load_or_exit,
    local_option,
    s3_overrides,
    setup_logging,
    use_local_serve,
)
from backorigin.config.units import format_rate, format_size

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, Task, TaskID
    from rich.text import Text

    from backorigin.adapters import OriginAdapter
    from backorigin.config import Config
    from backorigin.keys import Router
    from backorigin.prewarm import EnqueueTally, Job, KeyWriter, Tally, Walk

EXIT_INTERRUPTED = 130
_AWS_SQS_HOST = re.compile(r"^sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_LEGACY_SQS_HOST = re.compile(r"^([a-z0-9-]+)\.queue\.amazonaws\.com(?:\.cn)?$")


@click.command()
@config_argument
@click.option(
    "--keys",
    "keys_file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    help="File of viewer keys, one per line (- for standard input).",
)
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
@click.option("--bucket", help="Bucket name (overrides bucket.name).")
@click.option("--s3-endpoint", help="S3-compatible endpoint URL (overrides bucket.endpoint_url).")
@local_option
@click.option("--verbose", "-v", count=True, help="More log output (-vv for debug).")
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
    serve` running CONFIG. An
    object already in S3 is skipped after one S3 HEAD, so running the command again after an
    interruption continues where it stopped; with --list, a copy whose size or origin version
    differs from the listing is reported as stale (never overwritten). A summary follows; the
    keys worth retrying go to --failed-out. Exits 0 when every key ended copied or exists, 1
    otherwise (2 for a bad config or usage, 130 when interrupted).

    With --queue-url the jobs are sent to the copy queue in batches of ten instead, for the
    deployed fetchers to copy; keys that could not be sent go to --failed-out.
    """
    from backorigin.prewarm import KeyWriter  # deferred: boto3 is slow to import

    setup_logging(verbose)
    if (keys_file is None) == (list_prefix is None):
        raise click.UsageError("give exactly one of --keys FILE and --list [PREFIX]")
    if keys_file and failed_out and _same_file(keys_file, failed_out):
        raise click.UsageError("--failed-out must not be the --keys file (it is rewritten)")
    loaded = load_or_exit(config)
    client_options: dict[str, str] = {}
    if local:
        if queue_url is not None:
            raise click.UsageError("--local copies here; it cannot be used with --queue-url")
        loaded, client_options = use_local_serve(
            config, loaded, bucket=bucket, s3_endpoint=s3_endpoint
        )
    elif (queue_url is None and not dry_run) or bucket or s3_endpoint:
        loaded = s3_overrides(loaded, bucket=bucket, endpoint_url=s3_endpoint)
    err = _console(stderr=True)
    out = _console(stderr=False)
    with KeyWriter(None if dry_run else failed_out) as failed:
        if dry_run:
            status = _dry_run(loaded, keys_file, list_prefix, queue_url, err)
        elif queue_url is not None:
            status = _distributed(
                loaded, keys_file, list_prefix, queue_url, concurrency, failed, out, err
            )
        else:
            status = _local(
                loaded, client_options, keys_file, list_prefix, concurrency, failed, out, err
            )
    if failed.count and failed_out:
        err.print(
            f"{failed.count} key(s) to retry written to {failed_out} "
            f"(run again with --keys {failed_out})",
            highlight=False,
        )
    sys.exit(status)


# --- the three modes --------------------------------------------------------------------------


def _local(
    config: Config,
    client_options: dict[str, str],
    keys_file: str | None,
    list_prefix: str | None,
    concurrency: int,
    failed: KeyWriter,
    out: Console,
    err: Console,
) -> int:
    from backorigin.prewarm import LocalPrewarm, Outcome, Walk
    from backorigin.transfer import CopyEngine

    # One client for every worker and every part upload, pooled to match; checked once here,
    # so missing credentials stop the run before the first key instead of failing each.
    s3 = bucket_client_or_exit(config, client_options, workers=concurrency)
    engine = CopyEngine(config, s3_client=s3)
    walk = Walk(config, engine.adapter, list_prefix) if list_prefix is not None else None
    progress = _progress(err)
    task = progress.add_task("prewarm", total=None, bytes=0)
    runner: LocalPrewarm

    def on_outcome(outcome: Outcome) -> None:
        progress.update(task, advance=1, bytes=runner.tally.bytes)

    runner = LocalPrewarm(engine, concurrency=concurrency, failed=failed, on_outcome=on_outcome)
    jobs = _jobs(keys_file, walk, progress, task)
    started = time.monotonic()
    interrupted = False
    try:
        with progress:
            runner.run(jobs)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        engine.close()
    elapsed = time.monotonic() - started
    _local_summary(runner.tally, walk, elapsed, interrupted, out, err)
    if interrupted:
        return EXIT_INTERRUPTED
    return 0 if runner.tally.ok and not (walk and walk.not_listable) else 1


def _distributed(
    config: Config,
    keys_file: str | None,
    list_prefix: str | None,
    queue_url: str,
    concurrency: int,
    failed: KeyWriter,
    out: Console,
    err: Console,
) -> int:
    from backorigin.keys import Router
    from backorigin.prewarm import Enqueuer, QueueUnusable, Walk, routable

    walk = Walk(config, _adapters(config), list_prefix) if list_prefix is not None else None
    progress = _progress(err, with_bytes=False)
    task = progress.add_task("enqueue", total=None, bytes=0)
    rejected: list[tuple[str, str]] = []
    lock = threading.Lock()

    def reject(key: str, reason: str) -> None:
        with lock:
            rejected.append((key, reason))
        progress.update(task, advance=1)

    keys: Iterator[str] = (job.key for job in _jobs(keys_file, walk, progress, task))
    if walk is None:  # listed keys come out of the router already
        keys = routable(Router(config), keys, reject)
    enqueuer = Enqueuer(_sqs_client(queue_url, concurrency), queue_url)
    started = time.monotonic()
    interrupted = False
    tally: EnqueueTally | None = None
    try:
        with progress:
            tally = enqueuer.send_all(
                keys,
                concurrency=concurrency,
                failed=failed,
                on_batch=lambda sent, bad: progress.update(task, advance=sent + bad),
            )
    except KeyboardInterrupt:
        interrupted = True
    except QueueUnusable as exc:
        err.print(str(exc), highlight=False, markup=False)
        return 1
    elapsed = time.monotonic() - started
    _enqueue_summary(tally, walk, rejected, queue_url, elapsed, interrupted, out, err)
    if interrupted or tally is None:
        return EXIT_INTERRUPTED
    ok = not tally.failed and not tally.error and not rejected
    return 0 if ok and not (walk and walk.not_listable) else 1


def _dry_run(
    config: Config,
    keys_file: str | None,
    list_prefix: str | None,
    queue_url: str | None,
    err: Console,
) -> int:
    from backorigin.errors import BackoriginError
    from backorigin.keys import Router
    from backorigin.prewarm import Walk

    walk = Walk(config, _adapters(config), list_prefix) if list_prefix is not None else None
    router = Router(config)
    jobs = 0
    problems = 0
    try:
        for job in _jobs(keys_file, walk, None, None):
            line = _dry_run_line(job, router, err)
            if line is None:
                problems += 1
                continue
            jobs += 1
            click.echo(line)  # data for other tools: tab-separated, never reformatted
    except BackoriginError as exc:
        err.print(f"stopped early: {exc}", highlight=False, markup=False)
        problems += 1
    where = f"enqueued to {queue_url}" if queue_url else "copied"
    err.print(
        f"dry run: {jobs} job(s) would be {where}; nothing was read from S3 or sent",
        highlight=False,
    )
    if walk is not None:
        _walk_notes(walk, err)
    return 0 if not problems and not (walk and walk.not_listable) else 1


def _dry_run_line(job: Job, router: Router, err: Console) -> str | None:
    """``key, origin, origin key, size`` of a job, or None (reported) if it cannot be routed."""
    from backorigin.errors import InvalidKey, ObjectNotFound

    if job.info is not None:
        return f"{job.key}\t{job.origin}\t{job.info.key}\t{job.info.size}"
    try:
        target = router.route(job.key).primary
    except (InvalidKey, ObjectNotFound) as exc:
        err.print(f"{job.key}: {exc}", highlight=False, markup=False)
        return None
    return f"{job.key}\t{target.origin}\t{target.key}\t-"


# --- jobs -------------------------------------------------------------------------------------


def _jobs(
    keys_file: str | None,
    walk: Walk | None,
    progress: Progress | None,
    task: TaskID | None,
) -> Iterator[Job]:
    """The jobs of ``--keys`` or ``--list``, setting the progress total once it is known."""
    from backorigin.prewarm import Job, count_keys, read_keys

    def set_total(total: int) -> None:
        if progress is not None and task is not None:
            progress.update(task, total=total)

    if walk is not None:
        for job in walk:
            if progress is not None and task is not None and walk.jobs % 1000 == 0:
                progress.update(task, description=f"prewarm (listed {walk.listed})")
            yield job
        if progress is not None and task is not None:
            progress.update(task, description="prewarm")
        set_total(walk.jobs)
        return
    assert keys_file is not None
    if keys_file != "-":
        set_total(count_keys(keys_file))
        with open(keys_file, encoding="utf-8", newline="") as file:
            yield from (Job(key) for key in read_keys(file))
        return
    count = 0
    for count, key in enumerate(read_keys(sys.stdin), start=1):  # noqa: B007 - counted
        yield Job(key)
    set_total(count)


def _adapters(config: Config) -> Callable[[str], OriginAdapter[Any]]:
    """Builds each origin's adapter once (distributed and dry runs have no copy engine)."""
    from backorigin.adapters import create_adapter
    from backorigin.config.secrets import SecretResolver

    secrets = SecretResolver()
    built: dict[str, OriginAdapter[Any]] = {}

    def adapter(name: str) -> OriginAdapter[Any]:
        if name not in built:
            built[name] = create_adapter(config.origin(name), secrets=secrets)
        return built[name]

    return adapter


def _sqs_client(queue_url: str, concurrency: int) -> Any:
    """An SQS client for the queue: its region from the URL; a non-AWS host is the endpoint."""
    import boto3
    from botocore.config import Config as BotoConfig

    parts = urlsplit(queue_url)
    host = parts.hostname or ""
    match = _AWS_SQS_HOST.match(host) or _LEGACY_SQS_HOST.match(host)
    aws = host.endswith((".amazonaws.com", ".amazonaws.com.cn"))
    region = match.group(1) if match else boto3.session.Session().region_name
    if region is None and not aws:
        region = "us-east-1"  # a local SQS (moto, ElasticMQ) ignores it, but signing needs one
    return boto3.client(
        "sqs",
        region_name=region,
        endpoint_url=None if aws else f"{parts.scheme}://{parts.netloc}",
        config=BotoConfig(
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=concurrency + 4,
        ),
    )


def _same_file(a: str, b: str) -> bool:
    if a == "-":
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


# --- display ----------------------------------------------------------------------------------


def _console(*, stderr: bool) -> Console:
    from rich.console import Console

    # Messages carry keys and paths: never wrapped mid-word (tables still fit the width).
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


PLAIN_PROGRESS_SECONDS = 10.0
"""Without a terminal, how often a plain progress line is printed."""


def _progress(console: Console, *, with_bytes: bool = True) -> Progress:
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
            super().__init__(console=console, disable=True)
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
                    console.print(
                        f"{task.description}: {task.completed:.0f}{total} "
                        f"{' '.join(rates(task).split())}",
                        highlight=False,
                        markup=False,
                        soft_wrap=True,
                    )

    if not console.is_terminal:
        return PlainLines()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        Rates(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        refresh_per_second=4,
        redirect_stdout=False,
        redirect_stderr=False,
    )


def _rate(count: int, nbytes: int, elapsed: float) -> tuple[str, str]:
    """Objects per second and the byte rate (``-`` when there is none to state)."""
    if elapsed <= 0:
        return "-", "-"
    return f"{count / elapsed:.1f}", format_rate(nbytes, elapsed) or "-"


def _local_summary(
    tally: Tally,
    walk: Walk | None,
    elapsed: float,
    interrupted: bool,
    out: Console,
    err: Console,
) -> None:
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
    table = Table(
        title="prewarm" + (" (interrupted)" if interrupted else ""),
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
        err.print(f"{labels[status]} ({tally.counts[status]}{shown}):", highlight=False)
        for key, reason in examples:
            err.print(f"  {key}  {reason}", highlight=False, markup=False)
    if tally.error:
        err.print(f"stopped early: {tally.error}", highlight=False, markup=False)
    if walk is not None:
        _walk_notes(walk, err)


def _enqueue_summary(
    tally: EnqueueTally | None,
    walk: Walk | None,
    rejected: list[tuple[str, str]],
    queue_url: str,
    elapsed: float,
    interrupted: bool,
    out: Console,
    err: Console,
) -> None:
    from rich import box
    from rich.table import Table

    table = Table(
        title="prewarm via " + queue_url + (" (interrupted)" if interrupted else ""),
        box=box.SIMPLE,
        show_header=False,
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    sent = tally.sent if tally else 0
    table.add_row("enqueued", str(sent))
    table.add_row("failed to enqueue", str(tally.failed if tally else 0))
    table.add_row("rejected (invalid key or no route)", str(len(rejected)))
    table.add_row("SendMessageBatch calls", str(tally.batches if tally else 0))
    table.add_row("seconds", f"{elapsed:.1f}")
    table.add_row("jobs/s", _rate(sent, 0, elapsed)[0])
    if walk is not None:
        table.add_row("listed at the origins", str(walk.listed))
        table.add_row("unreachable (skipped)", str(walk.unreachable))
    out.print(table)
    if tally is not None and tally.error:
        err.print(f"stopped early: {tally.error}", highlight=False, markup=False)
    if tally is not None and tally.examples:
        err.print("failed to enqueue, first ones:")
        for key, reason in tally.examples:
            err.print(f"  {key}  {reason}", highlight=False, markup=False)
    for key, reason in rejected[:20]:
        err.print(f"rejected: {key}  {reason}", highlight=False, markup=False)
    if walk is not None:
        _walk_notes(walk, err)


def _walk_notes(walk: Walk, err: Console) -> None:
    for origin, reason in walk.not_listable.items():
        err.print(
            f"origin {origin} was not listed ({reason}); give its keys with --keys",
            highlight=False,
            markup=False,
        )
    if walk.unreachable_examples:
        err.print(
            f"{walk.unreachable} listed object(s) no viewer key reaches (no route leads there), "
            "e.g.:",
            highlight=False,
        )
        for origin, key in walk.unreachable_examples[:5]:
            err.print(f"  {origin}: {key}", highlight=False, markup=False)
