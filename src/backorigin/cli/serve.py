"""``backorigin serve``: the whole system on one machine."""

from __future__ import annotations

__all__ = ["serve"]

import logging
import os
import secrets
import sys
from pathlib import Path

import click

from backorigin.cli.common import config_argument, load_or_exit, s3_overrides
from backorigin.errors import MissingExtra

DEFAULT_BUCKET = "backorigin-local"


@click.command()
@config_argument
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, help="Port to listen on.")
@click.option(
    "--s3-endpoint",
    help="S3-compatible endpoint of the bucket. Default: the config's bucket.endpoint_url, "
    "else an embedded S3 server started for this run.",
)
@click.option("--bucket", help="Bucket name (overrides bucket.name).")
@click.option("--workers", default=2, show_default=True, help="Fetcher threads copying objects.")
@click.option(
    "--default-root-object",
    default="index.html",
    show_default=True,
    help="The object a request for / gets, as the distribution's default root object.",
)
@click.option(
    "--strict-origins",
    is_flag=True,
    help="Refuse IP-literal origins as CloudFront does, loopback ones included (by default "
    "origins on this machine are served, with a warning).",
)
@click.option(
    "--expose-provenance",
    is_flag=True,
    help="Show viewers the copies' x-amz-meta-backorigin-* metadata (removed by default, as "
    "the deployed distribution does).",
)
@click.option(
    "--verbose", "-v", count=True, help="More log output: -v every backorigin logger, -vv debug."
)
def serve(
    config: str,
    host: str,
    port: int,
    s3_endpoint: str | None,
    bucket: str | None,
    workers: int,
    default_root_object: str,
    strict_origins: bool,
    expose_provenance: bool,
    verbose: int,
) -> None:
    """Serve CONFIG locally the way CloudFront would, with the real edge and fetcher code.

    GET and HEAD go to the bucket first; on a miss the edge function routes and signs the
    request to the legacy origin, the viewer gets the origin's response, and a fetcher thread
    copies the object into the bucket so the next request is served from it. Ctrl-C stops and
    prints what was served and copied; GET /.backorigin/status shows the same counts as JSON
    while it runs (this server only: the deployed distribution has no such endpoint).

    While it runs, `backorigin fetch --local CONFIG KEY...` and `backorigin prewarm --local
    CONFIG ...` copy into the same bucket (the embedded S3 server's credentials included).
    """
    from backorigin.local import LocalCloudFront
    from backorigin.local.embedded_s3 import EmbeddedS3, EmbeddedS3Error
    from backorigin.local.state import ServeState, remove_serve_state, write_serve_state
    from backorigin.transfer.bucket import make_s3_client

    level = logging.DEBUG if verbose > 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("backorigin" if verbose else "backorigin.local").setLevel(
        min(level, logging.INFO)
    )
    loaded = load_or_exit(config)
    embedded: EmbeddedS3 | None = None
    endpoint = s3_endpoint or loaded.bucket.endpoint_url
    name = bucket or loaded.bucket.name
    client_options: dict[str, str] = {}
    if endpoint is None:
        access_key, secret_key = "local" + secrets.token_hex(6), secrets.token_urlsafe(24)
        embedded = EmbeddedS3(access_key=access_key, secret_key=secret_key)
        try:
            embedded.start()
        except (EmbeddedS3Error, MissingExtra) as exc:
            click.echo(f"{exc}\n(or give an S3 endpoint with --s3-endpoint)", err=True)
            sys.exit(1)
        endpoint = embedded.url
        name = name or DEFAULT_BUCKET
        client_options = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
        click.echo(
            f"embedded S3 at {endpoint} (access key {access_key}, secret key {secret_key})",
            err=True,
        )
    try:
        loaded = s3_overrides(loaded, bucket=name, endpoint_url=endpoint)
        s3 = make_s3_client(loaded.bucket, max_pool_connections=32, **client_options)
        assert loaded.bucket.name is not None  # s3_overrides exits without one
        if embedded is not None:
            s3.create_bucket(Bucket=loaded.bucket.name)
        server = LocalCloudFront(
            loaded,
            s3_client=s3,
            host=host,
            port=port,
            workers=workers,
            default_root_object=default_root_object,
            strict_origins=strict_origins,
            expose_provenance=expose_provenance,
        )
        state = ServeState(
            config=str(Path(config).resolve()),
            pid=os.getpid(),
            url=f"http://{host}:{port}",
            bucket=loaded.bucket.name,
            endpoint=str(loaded.bucket.endpoint_url),
            access_key=client_options.get("aws_access_key_id"),
            secret_key=client_options.get("aws_secret_access_key"),
        )
        write_serve_state(state)
        click.echo(
            f"backorigin serving http://{host}:{port} (bucket {loaded.bucket.name} at "
            f"{endpoint}); Ctrl-C stops\n"
            f"copy into it now: backorigin fetch --local {config} KEY...",
            err=True,
        )
        try:
            server.run()
        finally:
            remove_serve_state(state)
        click.echo(server.stats().summary(), err=True)
    finally:
        if embedded is not None:
            click.echo("stopping the embedded S3 server (its data is removed)", err=True)
            embedded.stop()
