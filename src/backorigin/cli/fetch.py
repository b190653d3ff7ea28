"""``backorigin fetch``: copy keys into S3 now."""

from __future__ import annotations

__all__ = ["fetch"]

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import click

from backorigin.cli.common import config_argument, load_or_exit, s3_overrides, setup_logging
from backorigin.config.units import format_size

if TYPE_CHECKING:
    from backorigin.transfer import CopyResult


def _line(result: CopyResult) -> str:
    rate = ""
    if result.bytes and result.seconds > 0:
        rate = f" ({result.bytes / result.seconds / 1e6:.1f} MB/s)"
    reason = f"  {result.reason}" if result.reason and not result.outcome.ok else ""
    return (
        f"{result.key}\t{result.outcome.value}\t{format_size(result.bytes)}"
        f"\t{result.seconds:.2f}s{rate}{reason}"
    )


@click.command()
@config_argument
@click.argument("keys", nargs=-1, required=True)
@click.option("--bucket", help="Bucket name (overrides bucket.name).")
@click.option("--s3-endpoint", help="S3-compatible endpoint URL (overrides bucket.endpoint_url).")
@click.option("--jobs", "-j", default=1, show_default=True, help="Keys copied at once.")
@click.option("--verbose", "-v", count=True, help="More log output (-vv for debug).")
def fetch(
    config: str,
    keys: tuple[str, ...],
    bucket: str | None,
    s3_endpoint: str | None,
    jobs: int,
    verbose: int,
) -> None:
    """Copy KEYS from their origins into the bucket now.

    Prints one line per key: key, outcome (copied, exists, in_progress, not_found, too_large,
    failed), bytes, seconds and, when it did not succeed, why. Exits 0 when every key ended
    copied or exists, 1 otherwise. S3 credentials and region follow boto3's usual chain.
    """
    from backorigin.transfer import CopyEngine  # deferred: boto3 is slow to import

    setup_logging(verbose)
    loaded = s3_overrides(load_or_exit(config), bucket=bucket, endpoint_url=s3_endpoint)
    engine = CopyEngine(loaded)
    ok = True
    try:
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            for result in pool.map(engine.copy, keys):
                click.echo(_line(result))
                ok = ok and result.outcome.ok
    finally:
        engine.close()
    sys.exit(0 if ok else 1)
