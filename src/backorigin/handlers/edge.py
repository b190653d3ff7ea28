"""The Lambda@Edge function: origin-request and origin-response on the legacy origin.

Requests to the S3 bucket (the origin group's primary) pass through untouched before anything
is imported. For the legacy (secondary) origin, origin-request turns the viewer's URI into a
validated key, routes it, points CloudFront at the routed origin and signs the request;
origin-response enqueues a background copy of what the origin served and makes misses
briefly cacheable. No failure of this function may turn into a viewer error it could avoid.
"""

from __future__ import annotations

__all__ = ["KEY_HEADER", "EdgeHandler", "make_edge_handler"]

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from backorigin.adapters import OriginAdapter, create_adapter
from backorigin.config.models import Config
from backorigin.config.secrets import SecretResolver
from backorigin.errors import BackoriginError, InvalidKey, ObjectNotFound
from backorigin.handlers.events import CloudFrontRecord, MalformedEvent, generated_response
from backorigin.keys import Router, decode_uri, encode_key
from backorigin.types import OriginRequest

log = logging.getLogger("backorigin.edge")

KEY_HEADER = "x-backorigin-key"
"""Carries the viewer's key (URI-encoded) from origin-request to origin-response."""
SERVED_HEADER = "x-backorigin"
DEDUP_SECONDS = 60.0
DEDUP_ENTRIES = 10_000
_COPY_STATUSES = frozenset({200, 206, 304})
_DROPPED_HEADERS = ("authorization", "cookie")
# Headers an origin-request trigger may not add, change or remove (CloudFront rejects the
# result, which the viewer would see as a 502).
_READ_ONLY_HEADERS = frozenset(
    {
        "accept-encoding",
        "content-length",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "transfer-encoding",
        "via",
    }
)


def _account_of(context: Any) -> str | None:
    arn = getattr(context, "invoked_function_arn", "") or ""
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4] else None


def _filter_query(query: str, allowed: frozenset[str]) -> str:
    """Keep only the parameters named in ``allowed``, in their original encoding."""
    if not query or not allowed:
        return ""
    kept = [pair for pair in query.split("&") if unquote_plus(pair.split("=", 1)[0]) in allowed]
    return "&".join(kept)


class EdgeHandler:
    """The edge function for one config; call it with ``(event, context)``.

    Build it with :func:`make_edge_handler`.
    """

    def __init__(
        self,
        config: Config,
        *,
        queue_url: str | None,
        queue_name: str | None,
        queue_region: str | None,
        sqs_client: Any,
        secrets: SecretResolver,
        adapters: dict[str, OriginAdapter[Any]],
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.router = Router(config)
        self.secrets = secrets
        self._queue_url = queue_url
        self._queue_name = queue_name
        self._queue_region = queue_region
        self._sqs = sqs_client
        self._adapters = adapters
        self._lock = threading.Lock()
        self._clock = clock
        self._recent: OrderedDict[str, float] = OrderedDict()
        self._forward = frozenset(config.edge.forward_query)
        self._negative = f"max-age={int(config.edge.negative_ttl)}"

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        try:
            record = CloudFrontRecord(event)
        except MalformedEvent as exc:
            # Nothing sensible can be returned for an event we cannot read; CloudFront only
            # sends well-formed ones, so this is a wiring error worth failing loudly on.
            log.error("malformed event: %s", exc)
            raise
        if record.event_type == "origin-request":
            if record.to_primary:
                return record.request
            return self._origin_request(record)
        if record.event_type == "origin-response":
            if record.to_primary:
                assert record.response is not None
                return record.response
            return self._origin_response(record, context)
        raise MalformedEvent(f"unexpected event type {record.event_type!r}")

    # --- origin-request ------------------------------------------------------------------------

    def adapter(self, origin: str) -> OriginAdapter[Any]:
        """The adapter of ``origin``, built once per container."""
        with self._lock:
            if origin not in self._adapters:
                self._adapters[origin] = create_adapter(
                    self.config.origin(origin), secrets=self.secrets
                )
            return self._adapters[origin]

    def _origin_request(self, record: CloudFrontRecord) -> dict[str, Any]:
        negative = int(self.config.edge.negative_ttl)
        try:
            key = decode_uri(record.uri)
            route = self.router.route(key)
        except InvalidKey as exc:
            return generated_response(400, "Bad Request", f"{exc.reason}\n")
        except ObjectNotFound:
            return generated_response(404, "Not Found", "not found\n", cache_seconds=negative)
        target = route.primary
        try:
            adapter = self.adapter(target.origin)
            spec = adapter.cloudfront_origin()
            uri = adapter.origin_uri(target.key)
            headers = record.request_headers
            for name in _DROPPED_HEADERS:
                headers.remove(name)
            default_port = 443 if spec.protocol == "https" else 80
            host = spec.domain if spec.port == default_port else f"{spec.domain}:{spec.port}"
            headers.set("host", host, display="Host")
            headers.set(KEY_HEADER, encode_key(key)[1:], display="X-Backorigin-Key")
            unsigned = OriginRequest(
                method=str(record.request.get("method", "GET")),
                uri=uri,
                querystring=_filter_query(record.querystring, self._forward),
                headers=dict(headers.items()),
            )
            signed = adapter.sign(unsigned)
        except InvalidKey as exc:
            return generated_response(400, "Bad Request", f"{exc.reason}\n")
        except BackoriginError as exc:
            # E.g. a secret that cannot be read: the origin cannot be reached correctly now.
            log.error("cannot prepare the request for origin %s: %s", target.origin, exc)
            return generated_response(503, "Service Unavailable", "origin unavailable\n")
        custom = record.custom_origin
        custom.update(
            domainName=spec.domain, path=spec.path, port=spec.port, protocol=spec.protocol
        )
        record.request["uri"] = signed.uri
        record.request["querystring"] = signed.querystring
        # The signed set is authoritative: sign() may also remove headers (a viewer's own
        # credentials), except those CloudFront does not let an origin-request trigger touch.
        for name, _ in list(headers.items()):
            if name not in signed.headers and name not in _READ_ONLY_HEADERS:
                headers.remove(name)
        for name, value in signed.headers.items():
            if headers.get(name) != value and name not in _READ_ONLY_HEADERS:
                headers.set(name, value)
        return record.request

    # --- origin-response -----------------------------------------------------------------------

    def _origin_response(self, record: CloudFrontRecord, context: Any) -> dict[str, Any]:
        response = record.response
        assert response is not None
        try:
            status = record.status
            headers = record.response_headers
            headers.set(SERVED_HEADER, "origin", display="X-Backorigin")
            if status in _COPY_STATUSES:
                encoded = record.request_headers.get(KEY_HEADER)
                if encoded is not None:
                    self._enqueue(decode_uri("/" + encoded), context)
                else:
                    log.warning("no %s header on %s; not enqueued", KEY_HEADER, record.uri)
            elif status == 404:
                headers.set("cache-control", self._negative, display="Cache-Control")
        except Exception:  # never turn a served response into a viewer error
            log.exception("origin-response handling failed for %s", record.uri)
        return response

    def _seen_recently(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            last = self._recent.get(key)
            if last is not None and now - last < DEDUP_SECONDS:
                return True
            self._recent[key] = now
            self._recent.move_to_end(key)
            while len(self._recent) > DEDUP_ENTRIES:
                self._recent.popitem(last=False)
            return False

    def _enqueue(self, key: str, context: Any) -> None:
        if self._seen_recently(key):
            return
        url = self._queue_url_for(context)
        if url is None:
            log.error("no copy queue is known; %s not enqueued", key)
            return
        try:
            self._client().send_message(QueueUrl=url, MessageBody=json.dumps({"key": key}))
        except Exception:
            with self._lock:  # let the next request for this key try again
                self._recent.pop(key, None)
            log.exception("could not enqueue a copy of %s", key)

    def _queue_url_for(self, context: Any) -> str | None:
        if self._queue_url:
            return self._queue_url
        account = _account_of(context)
        if not (account and self._queue_name and self._queue_region):
            return None
        return f"https://sqs.{self._queue_region}.amazonaws.com/{account}/{self._queue_name}"

    def _client(self) -> Any:
        with self._lock:
            if self._sqs is None:
                import boto3  # deferred: only a miss that must enqueue pays for boto3
                from botocore.config import Config as BotoConfig

                self._sqs = boto3.client(
                    "sqs",
                    region_name=self._queue_region,
                    config=BotoConfig(
                        connect_timeout=1,
                        read_timeout=2,
                        retries={"mode": "standard", "max_attempts": 2},
                    ),
                )
            return self._sqs


def make_edge_handler(
    config: Config,
    *,
    queue_url: str | None = None,
    queue_name: str | None = None,
    queue_region: str | None = None,
    sqs_client: Any = None,
    secrets: SecretResolver | None = None,
    adapters: dict[str, OriginAdapter[Any]] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> EdgeHandler:
    """Build the edge function (origin-request and origin-response) for ``config``.

    Args:
        config: The validated configuration.
        queue_url: The copy queue's URL. Lambda@Edge has no environment variables, so when
            deployed the URL is derived instead from ``queue_name`` and ``queue_region``
            (baked in) and the account id in the function's own ARN.
        queue_name: Name of the copy queue.
        queue_region: Region of the copy queue.
        sqs_client: An SQS client (built on the first enqueue otherwise).
        secrets: Resolves the origins' secrets (Secrets Manager values cached five minutes).
        adapters: Origin adapters by name (built on first use otherwise).
        clock: Monotonic clock for de-duplicating enqueues.
    """
    return EdgeHandler(
        config,
        queue_url=queue_url,
        queue_name=queue_name,
        queue_region=queue_region,
        sqs_client=sqs_client,
        secrets=secrets if secrets is not None else SecretResolver(ttl=300),
        adapters=dict(adapters or {}),
        clock=clock,
    )
