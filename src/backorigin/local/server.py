"""A local stand-in for CloudFront in front of the origin group, running the real handlers.

Each viewer GET/HEAD goes to the primary (the S3 bucket, through the edge function's
origin-request and origin-response triggers exactly as CloudFront would call them); on a
failover status it goes to the secondary: the edge origin-request handler routes, rewrites
and signs, a real HTTP request reaches the routed origin, the origin-response handler
enqueues the copy, and the origin's response streams to the viewer. Copy jobs go to an
in-process queue drained by threads running the fetcher handler. Identical concurrent misses
share one origin request, like CloudFront's request collapsing.

Around the function it does what CloudFront does (docs/CLOUDFRONT.md lists each rule and its
AWS page): ``/`` is the default root object; the origin-request event carries the headers
CloudFront puts there, and the request that reaches the origin also carries ``X-Amz-Cf-Id``;
a function result CloudFront would refuse (a read-only or disallowed header, an IP-literal
origin, a bad port, a generated response over the size limit, ...) is answered with a 502 and
a log line naming the rule; viewers do not see the copy's provenance metadata.

It counts what it serves (:mod:`backorigin.local.counters`): :meth:`LocalCloudFront.stats`
returns the counts, and ``GET /.backorigin/status`` (under the reserved key prefix, so no
viewer key can collide with it) answers them as JSON. That endpoint exists only here: on the
deployed distribution the edge refuses the path like any reserved key.
"""

from __future__ import annotations

__all__ = ["STATUS_PATH", "LocalCloudFront"]

import asyncio
import base64
import copy
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from aws_lambda_powertools import Logger, Metrics
from botocore.exceptions import ClientError
from yarl import URL

from backorigin._servers import Service
from backorigin.config.models import Config
from backorigin.config.secrets import SecretResolver
from backorigin.config.units import format_size
from backorigin.errors import InvalidKey
from backorigin.handlers.edge import make_edge_handler
from backorigin.handlers.fetcher import make_fetcher_handler
from backorigin.keys import RESERVED_PREFIX, bucket_key, decode_uri
from backorigin.local.cloudfront import (
    add_origin_request_headers,
    check_origin_request,
    check_origin_response,
    is_disallowed,
    is_ip_literal,
)
from backorigin.local.counters import ServeCounters, ServeStats, Source
from backorigin.local.queue import LocalQueue
from backorigin.transfer import CopyResult
from backorigin.transfer.bucket import make_s3_client
from backorigin.types import PROVENANCE_HEADERS

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
# What a copy records about where an object came from. The deployed distribution removes these
# exact names from viewer responses with a response headers policy (which removes by name, not
# by prefix); so does the stand-in.
_PROVENANCE = frozenset(PROVENANCE_HEADERS)
_PASSED_ON = ("range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since")
_BODILESS = frozenset({204, 304})  # statuses whose responses carry no body (RFC 9110)
_CHUNK = 256 * 1024
_SHARE_LIMIT = 64 * 1024 * 1024  # a collapsed response larger than this is not shared
STATUS_PATH = "/" + RESERVED_PREFIX + "status"
"""The local server's status endpoint: a reserved key, so never a viewer's object."""


class _DiscardMetrics(Metrics):
    """EMF metrics have no consumer outside Lambda: drop them instead of printing."""

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        self.clear_metrics()


EdgeFunction = Callable[[dict[str, Any], Any], dict[str, Any]]
"""A Lambda@Edge handler: ``handler(event, context) -> result``."""


def _cf_headers(headers: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    return {name.lower(): [{"key": name, "value": value}] for name, value in headers.items()}


def _cf_header_list(pairs: Iterable[tuple[str, str]]) -> dict[str, list[dict[str, str]]]:
    """CloudFront's header structure from (name, value) pairs, repeated names kept."""
    headers: dict[str, list[dict[str, str]]] = {}
    for name, value in pairs:
        headers.setdefault(name.lower(), []).append({"key": name, "value": value})
    return headers


def _request_id() -> str:
    """An id shaped like CloudFront's (56 characters of URL-safe base64)."""
    return base64.urlsafe_b64encode(os.urandom(40)).decode()


def _generated_body(result: dict[str, Any]) -> bytes:
    body = result.get("body") or ""
    if result.get("bodyEncoding") == "base64":
        return base64.b64decode(body)
    return str(body).encode()


def _plain_headers(headers: dict[str, list[dict[str, str]]]) -> list[tuple[str, str]]:
    # A function may leave out ``key``; Lambda@Edge then capitalizes the name itself.
    return [
        (
            entry.get("key") or "-".join(part.capitalize() for part in name.split("-")),
            entry["value"],
        )
        for name, values in headers.items()
        for entry in values
    ]


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


class LocalCloudFront(Service):
    """The local server. Use :meth:`start` / :meth:`stop` (or ``with``) to run it in a thread.

    Args:
        config: The configuration (``bucket.name`` required).
        s3_client: A boto3 S3 client for the bucket (built from the config otherwise).
        host: Address to listen on.
        port: Port to listen on (0 picks a free one; see :attr:`url`).
        workers: Fetcher threads draining the copy queue.
        secrets: Resolves the origins' secrets.
        visibility_timeout: Seconds before a failed copy job is retried.
        default_root_object: The object a request for ``/`` gets, like the distribution's
            (the construct's default too). Never empty.
        strict_origins: Refuse every IP-literal origin domain, as CloudFront does. Off by
            default so that origins on this machine (``127.0.0.1``, ``::1``) can be served;
            each such origin is then logged once as one CloudFront would refuse. Other IP
            literals are refused either way.
        expose_provenance: Pass the copies' provenance metadata
            (:data:`backorigin.types.PROVENANCE_HEADERS`, ``x-amz-meta-backorigin-*``) on to
            viewers. By default it is removed, as the deployed distribution does.
        wrap_edge: Given the edge handler built by
            :func:`~backorigin.handlers.edge.make_edge_handler` (wired to the local queue),
            returns the handler to run; for observing or altering the function in tests.
        recent_copies: How many of the latest copy results :attr:`copies` keeps. The
            counters (:meth:`stats`) count every copy; this only bounds the detail kept, so
            a server that runs for weeks holds no more than this many results.
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
        default_root_object: str = "index.html",
        strict_origins: bool = False,
        expose_provenance: bool = False,
        wrap_edge: Callable[[EdgeFunction], EdgeFunction] | None = None,
        recent_copies: int = 1000,
    ) -> None:
        if recent_copies < 0:
            raise ValueError("recent_copies must not be negative")
        if not config.bucket.name:
            raise ValueError("bucket.name must be set to serve")
        if not default_root_object.strip("/"):
            raise ValueError(
                "default_root_object must name an object: without one, a request for / "
                "reaches the edge function as an empty key"
            )
        self.config = config
        self.bucket = config.bucket.name
        self.s3 = s3_client or make_s3_client(config.bucket)
        self.host = host
        self.port = port
        self.default_root_object = default_root_object.lstrip("/")
        self.strict_origins = strict_origins
        self.expose_provenance = expose_provenance
        secrets = secrets if secrets is not None else SecretResolver()
        self.counters = ServeCounters()  # before the fetcher threads that update it start
        fetcher = make_fetcher_handler(
            config,
            s3_client=self.s3,
            logger=Logger(service="backorigin-fetcher", level="ERROR"),
            metrics=_DiscardMetrics(namespace="backorigin", service="backorigin-fetcher"),
            observer=self._log_copy,
            secrets=secrets,
        )
        self.queue = LocalQueue(fetcher, workers=workers, visibility_timeout=visibility_timeout)
        edge: EdgeFunction = make_edge_handler(
            config, queue_url=LocalQueue.url, sqs_client=self.queue, secrets=secrets
        )
        self.edge = wrap_edge(edge) if wrap_edge is not None else edge
        self._copies: deque[CopyResult] = deque(maxlen=recent_copies)
        self._copies_lock = threading.Lock()
        self._flights: dict[tuple[str, ...], _Flight] = {}
        self._secondary = self._default_secondary()
        self._warned_origins: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def copies(self) -> list[CopyResult]:
        """The latest copy results, oldest first: at most ``recent_copies`` of them.

        A snapshot, safe to read while fetcher threads add to it; :meth:`stats` has the
        counts of every copy since the server started.
        """
        with self._copies_lock:
            return list(self._copies)

    @property
    def url(self) -> str:
        """The server's base URL (without a trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def app(self) -> web.Application:
        """The aiohttp application (for ``web.run_app`` or tests)."""
        app = web.Application()
        # Added before the catch-all so that it wins; GET and HEAD only.
        app.router.add_get(STATUS_PATH, self._status)
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

    def stats(self) -> ServeStats:
        """What the server has served and copied so far, and its copy queue's state."""
        return self.counters.snapshot(self.queue.stats())

    def wait_served(self, count: int, timeout: float | None = None) -> bool:
        """Wait until ``count`` viewer responses in all have been counted; False on timeout.

        A response is counted just after it is sent, so a viewer can have it a moment before
        :meth:`stats` shows it.
        """
        return self.counters.wait_served(count, timeout)

    async def _status(self, _: web.Request) -> web.Response:
        return web.json_response(self.stats().as_dict(), headers={"Cache-Control": "no-store"})

    # --- the viewer request ------------------------------------------------------------------

    def _default_secondary(self) -> dict[str, Any]:
        """The origin group's secondary, as the construct sets it up (the edge re-points it)."""
        first = self.config.default_origin
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

    def _primary(self) -> dict[str, Any]:
        return {
            "s3": {
                "authMethod": "none",
                "customHeaders": {},
                "path": "",
                "domainName": f"{self.bucket}.s3.local",
                "region": "local",
            }
        }

    def _event(
        self, kind: str, request: dict[str, Any], request_id: str, response: Any = None
    ) -> dict[str, Any]:
        cf: dict[str, Any] = {
            "config": {
                "distributionDomainName": f"{self.host}:{self.port}",
                "distributionId": "LOCAL",
                "eventType": kind,
                "requestId": request_id,
            },
            "request": request,
        }
        if response is not None:
            cf["response"] = response
        return {"Records": [{"cf": cf}]}

    @staticmethod
    def _attempt(viewer_request: dict[str, Any], origin: dict[str, Any]) -> dict[str, Any]:
        """The origin-request event's request for one origin attempt.

        CloudFront puts the origin's domain in ``Host`` (the function re-points it when it
        changes the origin).
        """
        request = copy.deepcopy(viewer_request)
        request["origin"] = copy.deepcopy(origin)
        domain = next(iter(origin.values()))["domainName"]
        request["headers"]["host"] = [{"key": "Host", "value": domain}]
        return request

    async def _trigger(
        self,
        request: web.Request,
        kind: str,
        cf_request: dict[str, Any],
        request_id: str,
        response: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any] | None, web.Response | None]:
        """Run the edge function for one event and check its result as CloudFront does.

        Returns the result, or what CloudFront would answer instead: a 503 when the function
        fails, a 502 when its result breaks a rule (logged with the rule's name).
        """
        event = self._event(kind, cf_request, request_id, response)
        given = copy.deepcopy(event["Records"][0]["cf"])
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, self.edge, event, None)
        except Exception:
            # CloudFront answers a function's execution error with a 503 ("HTTP 503 status
            # code (function execution error)"); a result it refuses with a 502.
            log.exception("%s %s: the %s function failed", request.method, request.path, kind)
            return None, web.Response(
                status=503, text="503 Service Unavailable: the Lambda function returned an error\n"
            )
        if kind == "origin-request":
            problems = check_origin_request(
                given["request"], result, strict_origins=self.strict_origins
            )
        else:
            problems = check_origin_response(given["response"], result)
        if problems:
            for problem in problems:
                log.error(
                    "%s %s: 502, CloudFront refuses the %s result: %s",
                    request.method,
                    request.rel_url.raw_path,
                    kind,
                    problem,
                )
            return None, self._bad_gateway("the Lambda function result failed validation")
        return result, None

    @staticmethod
    def _bad_gateway(reason: str) -> web.Response:
        return web.Response(status=502, text=f"502 Bad Gateway: {reason}\n")

    def _viewer_headers(self, headers: Any) -> list[tuple[str, str]]:
        """What the viewer gets of a response's headers: no hop-by-hop, no provenance."""
        kept = []
        for name, value in _plain_headers(headers or {}):
            lowered = name.lower()
            if lowered in _HOP_BY_HOP or is_disallowed(lowered):
                continue
            if lowered in _PROVENANCE and not self.expose_provenance:
                continue
            kept.append((name, value))
        return kept

    def _generated(self, result: dict[str, Any]) -> web.Response:
        return web.Response(
            status=int(result["status"]),
            reason=result.get("statusDescription") or None,
            headers=self._viewer_headers(result.get("headers")),
            body=_generated_body(result),
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        if request.method not in ("GET", "HEAD"):
            self.counters.served("edge", 405, 0)
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        uri = request.rel_url.raw_path
        if uri == "/":  # the distribution's default root object (only for the root itself)
            uri = "/" + quote(self.default_root_object, safe="/~")
        request_id = _request_id()
        client_ip = request.remote or "127.0.0.1"
        viewer = {name: request.headers[name] for name in _PASSED_ON if name in request.headers}
        for name in ("X-Forwarded-For", "Via"):  # CloudFront forwards these, adding its own
            if name in request.headers:
                viewer[name] = request.headers[name]
        # The origin-request event already shows Via, X-Forwarded-For and CloudFront's
        # User-Agent (the guide's example event); only X-Amz-Cf-Id is added after the function.
        headers = add_origin_request_headers(
            {"headers": _cf_headers(viewer)}, request_id=request_id, client_ip=client_ip
        )["headers"]
        del headers["x-amz-cf-id"]
        cf_request = {
            "clientIp": client_ip,
            "headers": headers,
            "method": request.method,
            "querystring": request.rel_url.raw_query_string,
            "uri": uri,
        }
        primary_request, rejected = await self._trigger(
            request, "origin-request", self._attempt(cf_request, self._primary()), request_id
        )
        if primary_request is None:
            assert rejected is not None
            self._log_request(
                request, "edge", rejected.status, rejected.content_length or 0, started
            )
            return rejected
        if "status" in primary_request:  # generated at the edge: the bucket is not read
            response = self._generated(primary_request)
            self._log_request(
                request, "edge", response.status, response.content_length or 0, started
            )
            return response
        loop = asyncio.get_running_loop()
        status, s3_headers, body = await loop.run_in_executor(
            None, self._from_s3, request.method, primary_request
        )
        if status in self.config.edge.failover_status:
            # Origin failover: the primary's failure status goes to no origin-response
            # trigger; the secondary gets its own origin-request and origin-response.
            return await self._failover(request, cf_request, request_id, started)
        cf_response: dict[str, Any] = {
            "status": str(status),
            "statusDescription": "",
            "headers": s3_headers,
        }
        final, rejected = await self._trigger(
            request, "origin-response", primary_request, request_id, cf_response
        )
        if final is None:
            assert rejected is not None
            if body is not None:
                body.close()
            # Counted as the edge's: the viewer gets none of the bucket's response.
            self._log_request(
                request, "edge", rejected.status, rejected.content_length or 0, started
            )
            return rejected
        if "body" in final:  # the function replaced the body
            if body is not None:
                body.close()
            response = self._generated(final)
            self._log_request(
                request, "edge", response.status, response.content_length or 0, started
            )
            return response
        status = int(final["status"])
        streamed = web.StreamResponse(
            status=status, headers=self._viewer_headers(final.get("headers"))
        )
        length = (final.get("headers") or {}).get("content-length")
        if status in _BODILESS:  # e.g. a 200 the function turned into a 304
            if body is not None:
                body.close()
            body = None
        elif length:
            streamed.content_length = int(length[0]["value"])
        sent = await self._stream_blocking(request, streamed, body)
        self._log_request(request, "s3", streamed.status, sent, started)
        return streamed

    # --- primary: the bucket -----------------------------------------------------------------

    def _from_s3(
        self, method: str, cf_request: dict[str, Any]
    ) -> tuple[int, dict[str, list[dict[str, str]]], Any]:
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
                body = result["Body"]
        except ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            status = int(meta.get("HTTPStatusCode", 500))
            raw = meta.get("HTTPHeaders", {})
            keep = {k: v for k, v in raw.items() if k in ("etag", "last-modified")}
            return status, _cf_headers(keep) if status == 304 else {}, None
        raw_headers = result["ResponseMetadata"]["HTTPHeaders"]
        return (
            int(result["ResponseMetadata"]["HTTPStatusCode"]),
            _cf_headers(
                {
                    k: v
                    for k, v in raw_headers.items()
                    if not k.startswith("x-amz-id") and not is_disallowed(k)
                }
            ),
            body,
        )

    async def _stream_blocking(
        self, request: web.Request, response: web.StreamResponse, body: Any
    ) -> int:
        await response.prepare(request)
        sent = 0
        if body is not None:
            chunks: Iterator[bytes] = body.iter_chunks(_CHUNK)
            try:
                if request.method != "HEAD":
                    loop = asyncio.get_running_loop()
                    while True:
                        chunk = await loop.run_in_executor(None, next, chunks, b"")
                        if not chunk:
                            break
                        await response.write(chunk)
                        sent += len(chunk)
            finally:
                body.close()
        await response.write_eof()
        return sent

    # --- secondary: the legacy origin, through the edge function ----------------------------

    async def _failover(
        self, request: web.Request, cf_request: dict[str, Any], request_id: str, started: float
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
            return await self._lead(request, cf_request, request_id, flight, started)
        finally:
            flight.done = True
            flight.ready.set()
            async with flight.changed:
                flight.changed.notify_all()
            if self._flights.get(flight_key) is flight:
                del self._flights[flight_key]

    def _note_local_origin(self, domain: str) -> None:
        if is_ip_literal(domain) and domain not in self._warned_origins:
            self._warned_origins.add(domain)
            log.warning(
                "origin %s is an IP address: CloudFront refuses IP-literal origin domains "
                "(Lambda@Edge event structure); served here because it is this machine and "
                "strict_origins is off",
                domain,
            )

    async def _lead(
        self,
        request: web.Request,
        cf_request: dict[str, Any],
        request_id: str,
        flight: _Flight,
        started: float,
    ) -> web.StreamResponse:
        result, rejected = await self._trigger(
            request, "origin-request", self._attempt(cf_request, self._secondary), request_id
        )
        if result is None or "status" in result:
            flight.shareable = False
            response = rejected if result is None else self._generated(result)
            assert response is not None
            self._log_request(
                request, "edge", response.status, response.content_length or 0, started
            )
            return response
        custom = result["origin"]["custom"]
        self._note_local_origin(custom["domainName"])
        # What reaches the origin is the function's result plus what CloudFront adds after it.
        sent = add_origin_request_headers(
            result, request_id=request_id, client_ip=cf_request["clientIp"]
        )
        url = f"{custom['protocol']}://{custom['domainName']}:{custom['port']}"
        url += custom.get("path", "") + sent["uri"]
        if sent.get("querystring"):
            url += "?" + sent["querystring"]
        headers = _plain_headers(sent["headers"])
        headers += [(k, v) for k, v in _plain_headers(custom.get("customHeaders") or {})]
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
            response = web.Response(status=502, text="origin unreachable\n")
            self._log_request(request, "edge", 502, response.content_length or 0, started)
            return response
        async with upstream:
            # Disallowed headers are never shown to a function (nor passed on to viewers).
            cf_response: dict[str, Any] = {
                "status": str(upstream.status),
                "statusDescription": upstream.reason or "",
                "headers": _cf_header_list(
                    (k, v) for k, v in upstream.headers.items() if not is_disallowed(k)
                ),
            }
            final, rejected = await self._trigger(
                request, "origin-response", result, request_id, cf_response
            )
            if final is None or "body" in final:
                flight.shareable = False
                response = rejected if final is None else self._generated(final)
                assert response is not None
                self._log_request(
                    request, "edge", response.status, response.content_length or 0, started
                )
                return response
            flight.status = int(final["status"])
            flight.headers = self._viewer_headers(final.get("headers"))
            flight.ready.set()
            streamed = web.StreamResponse(status=flight.status, headers=flight.headers)
            bodiless = flight.status in _BODILESS or request.method == "HEAD"
            if upstream.content_length is not None and flight.status not in _BODILESS:
                streamed.content_length = upstream.content_length
            await streamed.prepare(request)
            if not bodiless:
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
        source: Source,
        status: int,
        size: int,
        started: float,
        *,
        shared: bool = False,
    ) -> None:
        if request.method == "HEAD":  # a generated body's length, but nothing was sent
            size = 0
        self.counters.served(source, status, size, collapsed=shared)
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
        with self._copies_lock:
            self._copies.append(result)
        self.counters.copied(result)
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
