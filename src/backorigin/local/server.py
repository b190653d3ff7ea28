"""A local stand-in for CloudFront in front of the origin group, running the real handlers.

Each viewer GET/HEAD goes to the primary (the S3 bucket, through the edge function's
origin-request and origin-response triggers exactly as CloudFront would call them); on a
failover status it goes to the secondary: the edge origin-request handler routes, rewrites
and signs, a real HTTP request reaches the routed origin, the origin-response handler
enqueues the copy, and the origin's response streams to the viewer. Copy jobs go to an
in-process queue drained by threads running the fetcher handler. Identical concurrent misses
share one origin request, like CloudFront's request collapsing.
"""

from __future__ import annotations

__all__ = ["LocalCloudFront"]

import asyncio
import copy
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aws_lambda_powertools import Logger, Metrics
from botocore.exceptions import ClientError
from yarl import URL

from backorigin.config.models import Config
from backorigin.config.secrets import SecretResolver
from backorigin.config.units import format_size
from backorigin.errors import InvalidKey
from backorigin.handlers.edge import make_edge_handler
from backorigin.handlers.fetcher import make_fetcher_handler
from backorigin.keys import bucket_key, decode_uri
from backorigin.local.queue import LocalQueue
from backorigin.transfer import CopyResult
from backorigin.transfer.bucket import make_s3_client

log = logging.getLogger("backorigin.local")

# Headers that describe one hop, not the resource (RFC 9110 §7.6.1), plus ones we recompute.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "x-backorigin-key",
    }
)
_PASSED_ON = ("range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since")
_CHUNK = 256 * 1024
_SHARE_LIMIT = 64 * 1024 * 1024  # a collapsed response larger than this is not shared


class _DiscardMetrics(Metrics):
    """EMF metrics have no consumer outside Lambda: drop them instead of printing."""

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        self.clear_metrics()


def _cf_headers(headers: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    return {name.lower(): [{"key": name, "value": value}] for name, value in headers.items()}


def _plain_headers(headers: dict[str, list[dict[str, str]]]) -> list[tuple[str, str]]:
    return [(entry["key"], entry["value"]) for values in headers.values() for entry in values]


@dataclass
class _Flight:
    """One origin response shared by identical concurrent misses."""

    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    done: bool = False
    shareable: bool = True
    size: int = 0


class LocalCloudFront:
    """The local server. Use :meth:`start` / :meth:`stop` (or ``with``) to run it in a thread.

    Args:
        config: The configuration (``bucket.name`` required).
        s3_client: A boto3 S3 client for the bucket (built from the config otherwise).
        host: Address to listen on.
        port: Port to listen on (0 picks a free one; see :attr:`url`).
        workers: Fetcher threads draining the copy queue.
        secrets: Resolves the origins' secrets.
        visibility_timeout: Seconds before a failed copy job is retried.
    """

    def __init__(
        self,
        config: Config,
        *,
        s3_client: Any = None,
        host: str = "127.0.0.1",
        port: int = 8080,
        workers: int = 2,
        secrets: SecretResolver | None = None,
        visibility_timeout: float = 2.0,
    ) -> None:
        if not config.bucket.name:
            raise ValueError("bucket.name must be set to serve")
        self.config = config
        self.bucket = config.bucket.name
        self.s3 = s3_client or make_s3_client(config.bucket)
        self.host = host
        self.port = port
        secrets = secrets if secrets is not None else SecretResolver()
        fetcher = make_fetcher_handler(
            config,
            s3_client=self.s3,
            logger=Logger(service="backorigin-fetcher", level="ERROR"),
            metrics=_DiscardMetrics(namespace="backorigin", service="backorigin-fetcher"),
            observer=self._log_copy,
            secrets=secrets,
        )
        self.queue = LocalQueue(fetcher, workers=workers, visibility_timeout=visibility_timeout)
        self.edge = make_edge_handler(
            config, queue_url=LocalQueue.url, sqs_client=self.queue, secrets=secrets
        )
        self.copies: list[CopyResult] = []
        self._flights: dict[tuple[str, ...], _Flight] = {}
        self._secondary = self._default_secondary()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's base URL (without a trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def app(self) -> web.Application:
        """The aiohttp application (for ``web.run_app`` or tests)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, _: web.Application) -> None:
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
        )

    async def _on_cleanup(self, _: web.Application) -> None:
        if self._session is not None:
            await self._session.close()
        await asyncio.get_running_loop().run_in_executor(None, self.queue.stop)

    def run(self) -> None:
        """Serve in the foreground until Ctrl-C or SIGTERM, then shut down cleanly."""
        web.run_app(self.app(), host=self.host, port=self.port, print=None, access_log=None)

    def start(self) -> LocalCloudFront:
        """Serve in a background thread; returns once the socket is bound."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._runner = web.AppRunner(self.app(), access_log=None)
                loop.run_until_complete(self._runner.setup())
                # Bind the socket here so that port 0 yields a port we know.
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, self.port))
                self.port = sock.getsockname()[1]
                loop.run_until_complete(web.SockSite(self._runner, sock).start())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="backorigin-serve", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        """Stop serving, the fetcher threads with it."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop = self._thread = None

    def __enter__(self) -> LocalCloudFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the viewer request ------------------------------------------------------------------

    def _default_secondary(self) -> dict[str, Any]:
        """The origin group's secondary, as the construct sets it up (the edge re-points it)."""
        first = self.config.routes[0].origin if self.config.routes else self.config.origins[0].name
        return {
            "custom": {
                "customHeaders": {},
                "domainName": f"{first}.origin.invalid",
                "keepaliveTimeout": 5,
                "path": "",
                "port": 443,
                "protocol": "https",
                "readTimeout": 30,
                "sslProtocols": ["TLSv1.2"],
            }
        }

    def _event(self, kind: str, request: dict[str, Any], response: Any = None) -> dict[str, Any]:
        cf: dict[str, Any] = {
            "config": {
                "distributionDomainName": f"{self.host}:{self.port}",
                "distributionId": "LOCAL",
                "eventType": kind,
                "requestId": str(time.monotonic_ns()),
            },
            "request": request,
        }
        if response is not None:
            cf["response"] = response
        return {"Records": [{"cf": cf}]}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        viewer = {name: request.headers[name] for name in _PASSED_ON if name in request.headers}
        cf_request = {
            "clientIp": request.remote or "127.0.0.1",
            "headers": _cf_headers(viewer),
            "method": request.method,
            "origin": {
                "s3": {
                    "authMethod": "none",
                    "customHeaders": {},
                    "path": "",
                    "domainName": f"{self.bucket}.s3.local",
                    "region": "local",
                }
            },
            "querystring": request.rel_url.raw_query_string,
            "uri": request.rel_url.raw_path,
        }
        loop = asyncio.get_running_loop()
        primary_request = await loop.run_in_executor(
            None, self.edge, self._event("origin-request", copy.deepcopy(cf_request))
        )
        status, headers, body = await loop.run_in_executor(
            None, self._from_s3, request.method, primary_request
        )
        if status in self.config.edge.failover_status:
            return await self._failover(request, cf_request, started)
        cf_response: dict[str, Any] = {
            "status": str(status),
            "statusDescription": "",
            "headers": headers,
        }
        cf_response = await loop.run_in_executor(
            None, self.edge, self._event("origin-response", primary_request, cf_response)
        )
        response = web.StreamResponse(
            status=int(cf_response["status"]),
            headers=[
                h for h in _plain_headers(cf_response["headers"]) if h[0].lower() not in _HOP_BY_HOP
            ],
        )
        length = cf_response["headers"].get("content-length")
        if length:
            response.content_length = int(length[0]["value"])
        sent = await self._stream_blocking(request, response, body)
        self._log_request(request, "s3", response.status, sent, started)
        return response

    # --- primary: the bucket -----------------------------------------------------------------

    def _from_s3(
        self, method: str, cf_request: dict[str, Any]
    ) -> tuple[int, dict[str, list[dict[str, str]]], Iterator[bytes] | None]:
        """Read from the bucket as CloudFront's origin access control would."""
        try:
            key = bucket_key(self.config, decode_uri(cf_request["uri"]))
        except InvalidKey:
            return 403, {}, None  # S3 would refuse such a key; fail over to the edge's 400
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        wanted = {name: values[0]["value"] for name, values in cf_request["headers"].items()}
        for header, param in (
            ("range", "Range"),
            ("if-none-match", "IfNoneMatch"),
            ("if-modified-since", "IfModifiedSince"),
            ("if-match", "IfMatch"),
            ("if-unmodified-since", "IfUnmodifiedSince"),
        ):
            if header in wanted:
                params[param] = wanted[header]
        try:
            if method == "HEAD":
                result = self.s3.head_object(**params)
                body = None
            else:
                result = self.s3.get_object(**params)
                body = result["Body"].iter_chunks(_CHUNK)
        except ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            status = int(meta.get("HTTPStatusCode", 500))
            raw = meta.get("HTTPHeaders", {})
            keep = {k: v for k, v in raw.items() if k in ("etag", "last-modified")}
            return status, _cf_headers(keep) if status == 304 else {}, None
        raw_headers = result["ResponseMetadata"]["HTTPHeaders"]
        return (
            int(result["ResponseMetadata"]["HTTPStatusCode"]),
            _cf_headers({k: v for k, v in raw_headers.items() if not k.startswith("x-amz-id")}),
            body,
        )

    async def _stream_blocking(
        self, request: web.Request, response: web.StreamResponse, body: Iterator[bytes] | None
    ) -> int:
        await response.prepare(request)
        sent = 0
        if body is not None and request.method != "HEAD":
            loop = asyncio.get_running_loop()
            while True:
                chunk = await loop.run_in_executor(None, next, body, b"")
                if not chunk:
                    break
                await response.write(chunk)
                sent += len(chunk)
        await response.write_eof()
        return sent

    # --- secondary: the legacy origin, through the edge function ----------------------------

    async def _failover(
        self, request: web.Request, cf_request: dict[str, Any], started: float
    ) -> web.StreamResponse:
        flight_key = (
            request.method,
            str(request.rel_url),
            *(request.headers.get(name, "") for name in _PASSED_ON),
        )
        flight = self._flights.get(flight_key)
        if flight is not None and flight.shareable:
            response = await self._follow(request, flight)
            if response is not None:
                self._log_request(
                    request, "origin", response.status, flight.size, started, shared=True
                )
                return response
        flight = _Flight()
        self._flights[flight_key] = flight
        try:
            return await self._lead(request, cf_request, flight, started)
        finally:
            flight.done = True
            flight.ready.set()
            async with flight.changed:
                flight.changed.notify_all()
            if self._flights.get(flight_key) is flight:
                del self._flights[flight_key]

    async def _lead(
        self, request: web.Request, cf_request: dict[str, Any], flight: _Flight, started: float
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        cf_request = copy.deepcopy(cf_request)
        cf_request["origin"] = copy.deepcopy(self._secondary)
        result = await loop.run_in_executor(
            None, self.edge, self._event("origin-request", cf_request)
        )
        if "status" in result:  # generated at the edge: the origin is never contacted
            flight.shareable = False
            response = web.Response(
                status=int(result["status"]),
                headers=[
                    h
                    for h in _plain_headers(result.get("headers", {}))
                    if h[0].lower() not in _HOP_BY_HOP
                ],
                text=result.get("body", ""),
            )
            self._log_request(
                request, "edge", response.status, len(result.get("body", "")), started
            )
            return response
        custom = result["origin"]["custom"]
        url = f"{custom['protocol']}://{custom['domainName']}:{custom['port']}"
        url += custom.get("path", "") + result["uri"]
        if result.get("querystring"):
            url += "?" + result["querystring"]
        headers = _plain_headers(result["headers"])
        assert self._session is not None
        try:
            upstream = await self._session.request(
                request.method,
                URL(url, encoded=True),
                headers=headers,
                allow_redirects=False,  # CloudFront hands redirects to the viewer
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            flight.shareable = False
            log.warning("origin unreachable for %s: %s", request.rel_url, exc)
            self._log_request(request, "origin", 502, 0, started)
            return web.Response(status=502, text="origin unreachable\n")
        async with upstream:
            origin_headers = dict(upstream.headers.items())
            cf_response: dict[str, Any] = {
                "status": str(upstream.status),
                "statusDescription": upstream.reason or "",
                "headers": _cf_headers(origin_headers),
            }
            cf_response = await loop.run_in_executor(
                None, self.edge, self._event("origin-response", result, cf_response)
            )
            flight.status = int(cf_response["status"])
            flight.headers = [
                h for h in _plain_headers(cf_response["headers"]) if h[0].lower() not in _HOP_BY_HOP
            ]
            flight.ready.set()
            streamed = web.StreamResponse(status=flight.status, headers=flight.headers)
            if upstream.content_length is not None:
                streamed.content_length = upstream.content_length
            await streamed.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_chunked(_CHUNK):
                    await streamed.write(chunk)
                    flight.size += len(chunk)
                    if flight.shareable:
                        flight.chunks.append(chunk)
                        if flight.size > _SHARE_LIMIT:
                            flight.shareable = False
                            flight.chunks.clear()
                    async with flight.changed:
                        flight.changed.notify_all()
            await streamed.write_eof()
        self._log_request(request, "origin", flight.status, flight.size, started)
        return streamed

    async def _follow(self, request: web.Request, flight: _Flight) -> web.StreamResponse | None:
        """Serve a collapsed request from the leader's flight (None: fetch on its own).

        The follower waits for the whole response, so it never starts a body it could not
        finish (the leader stops keeping chunks past the share limit).
        """
        while not flight.done:
            async with flight.changed:
                await flight.changed.wait()
        if not flight.shareable or flight.status == 0:
            return None
        response = web.StreamResponse(status=flight.status, headers=flight.headers)
        response.content_length = flight.size
        await response.prepare(request)
        if request.method != "HEAD":
            for chunk in flight.chunks:
                await response.write(chunk)
        await response.write_eof()
        return response

    # --- logging -----------------------------------------------------------------------------

    def _log_request(
        self,
        request: web.Request,
        source: str,
        status: int,
        size: int,
        started: float,
        *,
        shared: bool = False,
    ) -> None:
        ms = (time.monotonic() - started) * 1000
        note = " (collapsed)" if shared else ""
        log.info(
            "%s %s from %s%s %d %s %.0f ms",
            request.method,
            request.rel_url.raw_path,
            source,
            note,
            status,
            format_size(size),
            ms,
        )

    def _log_copy(self, result: CopyResult) -> None:
        self.copies.append(result)
        rate = result.bytes / result.seconds / 1e6 if result.bytes and result.seconds else 0.0
        reason = f" ({result.reason})" if result.reason and not result.outcome.ok else ""
        log.info(
            "copy %s %s %s %.1f MB/s%s",
            result.key,
            result.outcome.value,
            format_size(result.bytes),
            rate,
            reason,
        )
