"""The fetcher Lambda: copy jobs from the SQS queue through the copy engine.

SQS batches are processed with a partial batch response: copies that may succeed later
(``failed``, ``in_progress``) are reported in ``batchItemFailures`` and come back after the
visibility timeout (and, after the queue's receive limit, land in the DLQ); final outcomes
(``copied``, ``exists``, ``not_found``, ``too_large``) are acknowledged. Logs are structured
JSON and metrics are CloudWatch EMF, both through Powertools for AWS Lambda.
"""

from __future__ import annotations

__all__ = ["CopyFailed", "FetcherHandler", "make_fetcher_handler"]

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from backorigin.config.models import Config
from backorigin.config.secrets import SecretResolver
from backorigin.errors import BackoriginError
from backorigin.transfer import CopyEngine, CopyOutcome, CopyResult
from backorigin.transfer.job import CopyJob, MalformedJob

# Stop starting work this long before the Lambda times out, so an unfinished multipart copy
# is suspended cleanly (and resumed by the retry) instead of being killed mid-request.
SAFETY_SECONDS = 20.0
NAMESPACE = "backorigin"


class CopyFailed(BackoriginError):
    """A copy that should be retried later (raised so the batch reports the message)."""


class FetcherHandler:
    """The fetcher for one config; call it with ``(event, context)``."""

    def __init__(
        self,
        engine: CopyEngine,
        *,
        logger: Logger,
        metrics: Metrics,
        observer: Callable[[CopyResult], None] | None = None,
    ) -> None:
        self.engine = engine
        self.logger = logger
        self.metrics = metrics
        self.observer = observer

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        try:
            if "Records" in event:
                # A batch whose every copy must be retried is reported like any other, not
                # raised: raising would count as a fetcher error (and alarm) for routine
                # in_progress and failed copies, and with batches of one that is every one.
                processor = BatchProcessor(
                    event_type=EventType.SQS, raise_on_entire_batch_failure=False
                )
                response = process_partial_response(
                    event=event,
                    record_handler=lambda record: self._on_record(record, context),
                    processor=processor,
                    context=context,
                )
                return dict(response)
            keys = event.get("keys")
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise ValueError('expected an SQS event or {"keys": ["key", ...]}')
            results = [self._copy(key, context) for key in keys]
            return {"results": [_as_dict(result) for result in results]}
        finally:
            if self.metrics.metric_set:  # an empty flush only warns
                self.metrics.flush_metrics()

    def _on_record(self, record: SQSRecord, context: Any) -> None:
        try:
            # .get: a record without a body is a malformed job, not a batch failure.
            job = CopyJob.from_json(record.get("body"))
        except MalformedJob as exc:
            # A malformed job can never succeed: log it and let it go rather than retry.
            self.logger.error(
                "dropping malformed copy job", message_id=record.message_id, error=str(exc)
            )
            self.metrics.add_metric("MalformedJobs", MetricUnit.Count, 1)
            return
        result = self._copy(job.key, context, job.replace)
        if not result.outcome.final:
            raise CopyFailed(f"{job.key}: {result.outcome.value}: {result.reason}")

    def _copy(self, key: str, context: Any, replace: str | None = None) -> CopyResult:
        deadline = None
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining):
            deadline = time.monotonic() + remaining() / 1000 - SAFETY_SECONDS
        result = self.engine.copy(key, deadline=deadline, replace=replace)
        self._record(result)
        if self.observer is not None:
            self.observer(result)
        return result

    def _record(self, result: CopyResult) -> None:
        fields = _as_dict(result)
        if result.outcome is CopyOutcome.FAILED:
            self.logger.warning("copy failed", **fields)
        else:
            self.logger.info("copy finished", **fields)
        name = "Copies" + "".join(part.title() for part in result.outcome.value.split("_"))
        self.metrics.add_metric(name, MetricUnit.Count, 1)
        if result.outcome is CopyOutcome.COPIED:
            self.metrics.add_metric("BytesCopied", MetricUnit.Bytes, result.bytes)
            self.metrics.add_metric("CopySeconds", MetricUnit.Seconds, result.seconds)
        if result.outcome is CopyOutcome.NOT_FOUND:
            self.metrics.add_metric("OriginNotFound", MetricUnit.Count, 1)


def _as_dict(result: CopyResult) -> dict[str, Any]:
    return {
        "key": result.key,
        "outcome": result.outcome.value,
        "bytes": result.bytes,
        "seconds": round(result.seconds, 3),
        "origin": result.origin,
        "reason": result.reason,
        "resumed_parts": result.resumed_parts,
    }


def make_fetcher_handler(
    config: Config,
    *,
    engine: CopyEngine | None = None,
    s3_client: Any = None,
    logger: Logger | None = None,
    metrics: Metrics | None = None,
    observer: Callable[[CopyResult], None] | None = None,
    secrets: SecretResolver | None = None,
) -> FetcherHandler:
    """Build the fetcher Lambda handler for ``config``.

    Args:
        config: The validated configuration (``bucket.name`` required).
        engine: A copy engine (built from the config, once per container, otherwise).
        s3_client: The S3 client the engine uses when it is built here.
        logger: A Powertools logger (service ``backorigin-fetcher`` by default).
        metrics: A Powertools metrics instance (namespace ``backorigin`` by default).
        observer: Called with every copy's result (the local server logs them).
        secrets: Resolves the origins' secrets when the engine is built here.
    """
    return FetcherHandler(
        engine if engine is not None else CopyEngine(config, s3_client=s3_client, secrets=secrets),
        logger=logger if logger is not None else Logger(service="backorigin-fetcher"),
        metrics=metrics
        if metrics is not None
        else Metrics(namespace=NAMESPACE, service="backorigin-fetcher"),
        observer=observer,
    )
