"""``backorigin fetch``: copy keys into S3 now."""

from __future__ import annotations

__all__ = ["fetch"]

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import click

from backorigin.cli.common import (
    bucket_client_or_exit,
    bucket_options,
    concurrency_option,
    config_argument,
    load_for_bucket,
    local_option,
    setup_logging,
    verbose_option,
)
from backorigin.config.units import format_rate, format_size

if TYPE_CHECKING:
    from backorigin.transfer import CopyResult

_OUTCOME_WIDTH = len("in_progress")  # the longest outcome name
_SIZE_WIDTH = len("1023.9 GiB")


def _line(result: CopyResult, key_width: int) -> str:
    """One aligned row: key, outcome, size, seconds, rate (when there is one), reason."""
    rate = format_rate(result.bytes, result.seconds)
    line = (
        f"{result.key:<{key_width}}  {result.outcome.value:<{_OUTCOME_WIDTH}}  "
        f"{format_size(result.bytes):>{_SIZE_WIDTH}}  {result.seconds:6.2f}s"
    )
    if rate is not None:
        line += f" ({rate})"
    if result.reason and not result.outcome.ok:
        line += f"  {result.reason}"
    return line.rstrip()


@click.command()
@config_argument
@click.argument("keys", nargs=-1, required=True)
@bucket_options
@local_option
@concurrency_option(default=1, help="Keys copied at once.")
@verbose_option
def fetch(
    config: str,
    keys: tuple[str, ...],
    bucket: str | None,
    s3_endpoint: str | None,
    local: bool,
    concurrency: int,
    verbose: int,
) -> None:
    """Copy KEYS from their origins into the bucket now.

    Prints one aligned line per key: key, outcome (copied, exists, in_progress, not_found,
    too_large, failed), size, seconds, the rate and, when it did not succeed, why. Exits 0
    when every key ended copied or exists, 1 otherwise. S3 credentials and region follow
    boto3's usual chain; with --local, those of the `backorigin serve` running CONFIG.
    """
    from backorigin.transfer import CopyEngine  # deferred: boto3 is slow to import

    setup_logging(verbose)
    loaded, client_options = load_for_bucket(
        config, bucket=bucket, s3_endpoint=s3_endpoint, local=local
    )
    s3 = bucket_client_or_exit(loaded, client_options, workers=concurrency, local=local)
    engine = CopyEngine(loaded, s3_client=s3)
    width = max(len(key) for key in keys)
    ok = True
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            for result in pool.map(engine.copy, keys):
                click.echo(_line(result, width))
                ok = ok and result.outcome.ok
    finally:
        engine.close()
    sys.exit(0 if ok else 1)
