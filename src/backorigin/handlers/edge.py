"""The Lambda@Edge function: origin-request and origin-response on both origins.

Requests to the S3 bucket (the origin group's primary) pass through untouched; S3's responses
get the old origin's validators back (:mod:`backorigin.handlers.validators`). For the legacy
(secondary) origin, origin-request turns the viewer's URI into a validated key, routes it,
points CloudFront at the routed origin and signs the request; origin-response enqueues a
background copy of what the origin served, or, on a 404 from a route that has fallback
origins, a copy that tries them; misses are made briefly cacheable. No failure of this
function may turn into a viewer error it could avoid.

The handler works from the edge plan (:mod:`backorigin.handlers.plan`): routing, origins
reached without signing and origins signed from their adapter's edge recipe
(:mod:`backorigin.handlers.edge_signing`) need no config models; any other origin that signs
gets its adapter, built from the full config on first use. Copy jobs go to SQS through the
lean client of :mod:`backorigin.handlers.sqs`, not boto3.
"""

from __future__ import annotations

__all__ = ["EDGE_METRICS", "KEY_HEADER", "METRICS_NAMESPACE", "EdgeHandler", "make_edge_handler"]

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from urllib.parse import unquote_plus

from backorigin.errors import BackoriginError, InvalidKey, ObjectNotFound
from backorigin.handlers.events import CloudFrontRecord, MalformedEvent, generated_response
from backorigin.handlers.plan import EdgePlan
from backorigin.handlers.validators import restore_validators
from backorigin.keys import decode_uri, encode_key
from backorigin.transfer.job import CopyJob

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the lean path
if TYPE_CHECKING:
    import logging
    from typing import Any

    from backorigin.adapters import OriginAdapter
    from backorigin.config.models import Config
    from backorigin.config.secrets import SecretResolver
    from backorigin.handlers.edge_signing import EdgeSigner


def _log() -> logging.Logger:
    # Imported when there is something to say: the lean path stays free of logging's import.
    import logging

    return logging.getLogger("backorigin.edge")


KEY_HEADER = "x-backorigin-key"
"""Carries the viewer's key (URI-encoded) from origin-request to origin-response."""
SERVED_HEADER = "x-backorigin"
DEDUP_SECONDS = 60.0
DEDUP_ENTRIES = 10_000
NOT_FOUND_JOBS_PER_SECOND = 5.0
"""Copy jobs per second and container that 404s may start (bursts up to :data:`NOT_FOUND_BURST`).

A job after a 404 finds something only for the few objects that live on a fallback origin;
the cap keeps a scan of random keys from turning into a flood of jobs that find nothing."""
NOT_FOUND_BURST = 50.0
_COPY_STATUSES = frozenset({200, 206, 304})
METRICS_NAMESPACE = "backorigin"
"""CloudWatch namespace of the edge's metrics (the fetcher's too)."""
METRICS_SERVICE = "backorigin-edge"
"""Value of the ``service`` dimension of the edge's metrics (the fetcher's is
``backorigin-fetcher``, as Powertools names it)."""
EDGE_METRICS = ("ServedFromOrigin", "CopiesEnqueued", "EnqueueFailures", "RefusedKeys")
"""The metrics the edge function emits, each a count per invocation that has one:
responses of the legacy origin passed to viewers, copy jobs sent, copy jobs that could not be
sent, and viewer keys refused as invalid (a 400 made at the edge)."""
_DROPPED_HEADERS = ("authorization", "cookie")


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

    Build it with :func:`make_edge_handler` (from a validated config) or, in a bundle, from
    the baked edge plan with a loader for the full config.
    """

    def __init__(
        self,
        plan: EdgePlan,
        *,
        config: Config | Callable[[], Config],
        queue_url: str | None,
        queue_name: str | None,
        queue_region: str | None,
        sqs_client: Any,
        secrets: SecretResolver | None,
        adapters: dict[str, OriginAdapter[Any]],
        clock: Callable[[], float],
        metrics: Callable[[str], None] | None = None,
        edge_secrets: Callable[[Mapping[str, Any]], str] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.plan = plan
        self._metrics = metrics
        self._config = config
        self._secrets = secrets
        self._queue_url = queue_url
        self._queue_name = queue_name
        self._queue_region = queue_region
        self._sqs = sqs_client
        self._adapters = adapters
        self._edge_secrets = edge_secrets
        # A resolver given by the caller (serve, tests) also serves the recipes' references.
        self._bridge_secrets = secrets is not None
        self._wall_clock = wall_clock
        self._signers: dict[str, EdgeSigner] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._recent: OrderedDict[str, float] = OrderedDict()
        self._not_found_tokens = NOT_FOUND_BURST
        self._not_found_at = clock()
        self._negative = f"max-age={plan.negative_ttl}"

    @property
    def config(self) -> Config:
        """The full configuration (loaded on first use when the handler has a loader)."""
        with self._lock:
            if callable(self._config):
                self._config = self._config()
            return self._config

    @property
    def secrets(self) -> SecretResolver:
        """Resolves the origins' secrets (Secrets Manager values cached five minutes)."""
        with self._lock:
            if self._secrets is None:
                from backorigin.config.secrets import SecretResolver

                self._secrets = SecretResolver(ttl=300)
            return self._secrets

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        try:
            record = CloudFrontRecord(event)
        except MalformedEvent as exc:
            # Nothing sensible can be returned for an event we cannot read; CloudFront only
            # sends well-formed ones, so this is a wiring error worth failing loudly on.
            _log().error("malformed event: %s", exc)
            raise
        if record.event_type == "origin-request":
            if record.to_primary:
                return record.request
            counts: dict[str, int] = {}
            request = self._origin_request(record, counts)
        elif record.event_type == "origin-response":
            if record.to_primary:
                assert record.response is not None
                return primary_response(record.request, record.response)
            counts = {"ServedFromOrigin": 1}
            request = self._origin_response(record, context, counts)
        else:
            raise MalformedEvent(f"unexpected event type {record.event_type!r}")
        if counts and self._metrics is not None:
            self._emit(counts)
        return request

    def _emit(self, counts: dict[str, int]) -> None:
        """One CloudWatch embedded metric format (EMF) line for this invocation.

        Lambda sends what a function prints to its log group, and CloudWatch turns lines in
        this format into metrics: no client, no request, nothing imported on the way.
        """
        assert self._metrics is not None
        try:
            self._metrics(
                json.dumps(
                    {
                        "_aws": {
                            "Timestamp": int(time.time() * 1000),
                            "CloudWatchMetrics": [
                                {
                                    "Namespace": METRICS_NAMESPACE,
                                    "Dimensions": [["service"]],
                                    "Metrics": [{"Name": name, "Unit": "Count"} for name in counts],
                                }
                            ],
                        },
                        "service": METRICS_SERVICE,
                        **counts,
                    },
                    separators=(",", ":"),
                )
            )
        except Exception:  # metrics must never cost a viewer their response
            _log().exception("could not emit metrics")

    # --- origin-request ------------------------------------------------------------------------

    def adapter(self, origin: str) -> OriginAdapter[Any]:
        """The adapter of ``origin``, built once per container."""
        with self._lock:
            built = self._adapters.get(origin)
        if built is not None:
            return built
        from backorigin.adapters import create_adapter

        config, secrets = self.config, self.secrets
        with self._lock:
            if origin not in self._adapters:
                self._adapters[origin] = create_adapter(config.origin(origin), secrets=secrets)
            return self._adapters[origin]

    def _origin_request(self, record: CloudFrontRecord, counts: dict[str, int]) -> dict[str, Any]:
        try:
            key = decode_uri(record.uri)
            route = self.plan.route(key)
        except InvalidKey as exc:
            counts["RefusedKeys"] = 1
            return generated_response(400, "Bad Request", f"{exc.reason}\n")
        except ObjectNotFound:
            return generated_response(
                404, "Not Found", "not found\n", cache_seconds=self.plan.negative_ttl
            )
        target = route.primary
        origin = self.plan.origins[target.origin]
        try:
            headers = record.request_headers
            for name in _DROPPED_HEADERS:
                headers.remove(name)
            if origin.lean:
                spec: Any = origin
                uri = origin.origin_uri(target.key)
            else:
                adapter = self.adapter(target.origin)
                spec = adapter.cloudfront_origin()
                uri = adapter.origin_uri(target.key)
            default_port = 443 if spec.protocol == "https" else 80
            host = spec.domain if spec.port == default_port else f"{spec.domain}:{spec.port}"
            headers.set("host", host, display="Host")
            headers.set(KEY_HEADER, encode_key(key)[1:], display="X-Backorigin-Key")
            querystring = _filter_query(record.querystring, self.plan.forward_query)
            if origin.lean and origin.signing is None:
                record.request["uri"] = uri
                record.request["querystring"] = querystring
            elif origin.lean:
                method = str(record.request.get("method", "GET"))
                signed = self._signer(target.origin).sign(
                    method, uri, querystring, dict(headers.items())
                )
                _apply_signed(record, *signed)
            else:
                self._sign(record, adapter, uri, querystring)
        except InvalidKey as exc:
            counts["RefusedKeys"] = 1
            return generated_response(400, "Bad Request", f"{exc.reason}\n")
        except BackoriginError as exc:
            # E.g. a secret that cannot be read: the origin cannot be reached correctly now.
            _log().error("cannot prepare the request for origin %s: %s", target.origin, exc)
            return generated_response(503, "Service Unavailable", "origin unavailable\n")
        custom = record.custom_origin
        custom.update(
            domainName=spec.domain, path=spec.path, port=spec.port, protocol=spec.protocol
        )
        return record.request

    def _signer(self, origin: str) -> EdgeSigner:
        """The recipe signer of a lean origin that signs, built once per container."""
        with self._lock:
            signer = self._signers.get(origin)
            if signer is not None:
                return signer
            resolve = self._edge_secrets
            if resolve is None:
                if self._bridge_secrets:
                    resolve = _through(self._secrets)
                else:
                    from backorigin.handlers.edge_secrets import EdgeSecrets

                    resolve = EdgeSecrets()
                self._edge_secrets = resolve
            from backorigin.handlers.edge_signing import EdgeSigner

            recipe = self.plan.origins[origin].signing
            assert recipe is not None
            signer = self._signers[origin] = EdgeSigner(recipe, resolve, self._wall_clock)
            return signer

    @staticmethod
    def _sign(
        record: CloudFrontRecord, adapter: OriginAdapter[Any], uri: str, querystring: str
    ) -> None:
        from backorigin.types import OriginRequest

        unsigned = OriginRequest(
            method=str(record.request.get("method", "GET")),
            uri=uri,
            querystring=querystring,
            headers=dict(record.request_headers.items()),
        )
        signed = adapter.sign(unsigned)
        _apply_signed(record, signed.uri, signed.querystring, signed.headers)

    # --- origin-response -----------------------------------------------------------------------

    def _origin_response(
        self, record: CloudFrontRecord, context: Any, counts: dict[str, int]
    ) -> dict[str, Any]:
        response = record.response
        assert response is not None
        try:
            status = record.status
            headers = record.response_headers
            headers.set(SERVED_HEADER, "origin", display="X-Backorigin")
            if status == 404:
                headers.set("cache-control", self._negative, display="Cache-Control")
            if status in _COPY_STATUSES or status == 404:
                encoded = record.request_headers.get(KEY_HEADER)
                if encoded is None:
                    _log().warning("no %s header on %s; not enqueued", KEY_HEADER, record.uri)
                    return response
                key = decode_uri("/" + encoded)
                # A 404 is worth a copy job only where the copy path has somewhere else to
                # look: random keys must not fill the queue with jobs that find nothing.
                chase = status == 404
                if not chase or len(self.plan.route(key).targets) > 1:
                    sent = self._enqueue(key, context, rationed=chase)
                    if sent is not None:
                        counts["CopiesEnqueued" if sent else "EnqueueFailures"] = 1
        except Exception:  # never turn a served response into a viewer error
            _log().exception("origin-response handling failed for %s", record.uri)
        return response

    def _may_chase_not_found(self) -> bool:
        """Take a token of the 404 budget (a token bucket), if one is left."""
        now = self._clock()
        with self._lock:
            elapsed = max(0.0, now - self._not_found_at)
            self._not_found_at = now
            self._not_found_tokens = min(
                NOT_FOUND_BURST, self._not_found_tokens + elapsed * NOT_FOUND_JOBS_PER_SECOND
            )
            if self._not_found_tokens < 1:
                return False
            self._not_found_tokens -= 1
            return True

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

    def _enqueue(self, key: str, context: Any, *, rationed: bool = False) -> bool | None:
        """Send a copy job for ``key``: True when sent, False when sending failed, None
        when no job was due (sent recently, or over the 404 budget)."""
        if self._seen_recently(key):
            return None
        if rationed and not self._may_chase_not_found():
            with self._lock:  # not sent: a later request may try again
                self._recent.pop(key, None)
            return None
        url = self._queue_url_for(context)
        if url is None:
            _log().error("no copy queue is known; %s not enqueued", key)
            return False
        try:
            self._client().send_message(QueueUrl=url, MessageBody=CopyJob(key).to_json())
        except Exception:
            with self._lock:  # let the next request for this key try again
                self._recent.pop(key, None)
            _log().exception("could not enqueue a copy of %s", key)
            return False
        return True

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
                from backorigin.handlers.sqs import SqsClient

                self._sqs = SqsClient(self._queue_region)
            return self._sqs


def _apply_signed(
    record: CloudFrontRecord, uri: str, querystring: str, signed: Mapping[str, str]
) -> None:
    """Put a signed request (URI, query string, the whole header set) into the event."""
    # Here, not at the top: the primary path and the unsigned miss path never load the rules.
    from backorigin.cloudfront_rules import READ_ONLY_ORIGIN_REQUEST

    headers = record.request_headers
    record.request["uri"] = uri
    record.request["querystring"] = querystring
    # The signed set is authoritative: signing may also remove headers (a viewer's own
    # credentials), except those CloudFront does not let an origin-request trigger touch.
    for name, _ in list(headers.items()):
        if name not in signed and name not in READ_ONLY_ORIGIN_REQUEST:
            headers.remove(name)
    for name, value in signed.items():
        if headers.get(name) != value and name not in READ_ONLY_ORIGIN_REQUEST:
            headers.set(name, value)


def _through(resolver: SecretResolver | None) -> Callable[[Mapping[str, Any]], str]:
    """Resolve a recipe's plain references through a caller's :class:`SecretResolver`."""
    from backorigin.config.secrets import SecretRef

    assert resolver is not None

    def resolve(ref: Mapping[str, Any]) -> str:
        value = resolver.resolve(SecretRef.model_validate({"secret": dict(ref)}))
        return value.get_secret_value()

    return resolve


def primary_response(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """origin-response on the S3 primary: the old origin's validators, nothing else."""
    try:
        restore_validators(request, response)
    except Exception:  # never turn a served response into a viewer error
        _log().exception("could not restore the validators of %s", request.get("uri"))
    return response


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
    metrics: Callable[[str], None] | None = None,
    edge_secrets: Callable[[Mapping[str, Any]], str] | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> EdgeHandler:
    """Build the edge function (origin-request and origin-response) for ``config``.

    The handler works from the same edge plan a bundle bakes
    (:func:`backorigin.bundling.edge_plan`), so it behaves as the deployed function does.

    Args:
        config: The validated configuration.
        queue_url: The copy queue's URL. Lambda@Edge has no environment variables, so when
            deployed the URL is derived instead from ``queue_name`` and ``queue_region``
            (baked in) and the account id in the function's own ARN.
        queue_name: Name of the copy queue.
        queue_region: Region of the copy queue.
        sqs_client: Anything with boto3's ``send_message(QueueUrl=, MessageBody=)``
            (default: :class:`backorigin.handlers.sqs.SqsClient`, built on the first enqueue).
        secrets: Resolves the origins' secrets (Secrets Manager values cached five minutes).
        adapters: Origin adapters by name (built on first use otherwise).
        clock: Monotonic clock for de-duplicating enqueues and rationing those after 404s.
        metrics: Receives one CloudWatch EMF line (JSON text) per invocation that counted
            something (:data:`EDGE_METRICS`); the deployed function prints them, which puts
            them in its log group in the region it runs in. Default: no metrics.
        edge_secrets: Resolves the plain secret references of origins signed from their
            adapter's edge recipe (default: through ``secrets``; the bundled function uses
            :class:`backorigin.handlers.edge_secrets.EdgeSecrets`).
        wall_clock: Seconds since the epoch, for signatures that carry a time.
    """
    from backorigin.bundling import edge_plan

    if secrets is None and edge_secrets is None:
        # The config is loaded already: its resolver (boto3's credential chain and region)
        # serves the recipes too. Only a bundle, which has no models loaded, reads them lean.
        from backorigin.config.secrets import SecretResolver

        secrets = SecretResolver(ttl=300)
    return EdgeHandler(
        EdgePlan(edge_plan(config)),
        config=config,
        queue_url=queue_url,
        queue_name=queue_name,
        queue_region=queue_region,
        sqs_client=sqs_client,
        secrets=secrets,
        adapters=dict(adapters or {}),
        clock=clock,
        metrics=metrics,
        edge_secrets=edge_secrets,
        wall_clock=wall_clock,
    )
