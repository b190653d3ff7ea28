"""Distributed prewarm: copy jobs sent to the copy queue, for the deployed fetchers to run.

Jobs go out with SQS ``SendMessageBatch``, ten per call (the API's limit), as the
:class:`~backorigin.transfer.job.CopyJob` the edge function sends, so the fetcher cannot tell
a prewarm job from one a viewer request caused. A batch call can succeed for some entries and
fail for others: the failed entries are sent again, a bounded number of times with exponential
backoff, unless SQS says the sender is at fault (retrying the same entry cannot help then). SQS
delivers at least once and a re-sent entry may duplicate one that did arrive; that is harmless,
since a copy of an object already in S3 ends ``exists`` after one HEAD.
"""

from __future__ import annotations

__all__ = ["BATCH_SIZE", "EnqueueTally", "Enqueuer", "QueueUnusable", "sqs_client_for"]

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from backorigin.errors import BackoriginError
from backorigin.prewarm.keys_file import KeyWriter
from backorigin.transfer.job import CopyJob, queue_region

log = logging.getLogger("backorigin.prewarm")

BATCH_SIZE = 10
"""Entries per ``SendMessageBatch`` call: the most SQS accepts."""

_EXAMPLES = 20
# Client errors that say "slow down" rather than "this cannot work".
_THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "AWS.SimpleQueueService.RequestThrottled",
    }
)


class QueueUnusable(BackoriginError):
    """SQS refuses every call (no such queue, access denied, …): retrying cannot help."""


def _fatal(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 400 <= status < 500 and status != 429 and error.get("Code") not in _THROTTLING


def sqs_client_for(queue_url: str, concurrency: int = 16) -> Any:
    """A boto3 SQS client for the queue at ``queue_url``.

    Its region is the one the URL names (:func:`~backorigin.transfer.job.queue_region`, as
    for the edge function's sender), else the usual chain (``AWS_REGION``, the profile); a
    host outside AWS (ElasticMQ, moto) becomes the endpoint. Retries use botocore's standard
    mode, and the pool holds a connection per batch call in flight.

    Args:
        queue_url: The copy queue's URL.
        concurrency: ``SendMessageBatch`` calls that will be in flight.
    """
    import boto3
    from botocore.config import Config as BotoConfig

    parts = urlsplit(queue_url)
    aws = (parts.hostname or "").endswith((".amazonaws.com", ".amazonaws.com.cn"))
    region = queue_region(queue_url) or boto3.session.Session().region_name
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


def _job_of(job: str | CopyJob) -> CopyJob:
    return job if isinstance(job, CopyJob) else CopyJob(job)


@dataclass
class EnqueueTally:
    """What a distributed prewarm sent.

    Attributes:
        sent: Jobs SQS accepted.
        failed: Jobs that could not be sent (written to ``--failed-out``).
        batches: ``SendMessageBatch`` calls made, retries included.
        examples: Up to 20 ``(key, reason)`` of the failed jobs.
        error: Why the run stopped early (the keys' source failed), if it did.
    """

    sent: int = 0
    failed: int = 0
    batches: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, sent: int, failures: Sequence[tuple[str, str]], calls: int) -> None:
        """Count one batch's result."""
        with self._lock:
            self.sent += sent
            self.failed += len(failures)
            self.batches += calls
            room = _EXAMPLES - len(self.examples)
            self.examples.extend(failures[: max(room, 0)])


class Enqueuer:
    """Sends copy jobs to one SQS queue.

    Args:
        client: A boto3 SQS client.
        queue_url: The copy queue's URL.
        attempts: Calls per batch at most (the first one included).
        backoff: Pause before the second call; it doubles for each further one.
        sleep: ``time.sleep`` (tests pass their own).
    """

    def __init__(
        self,
        client: Any,
        queue_url: str,
        *,
        attempts: int = 5,
        backoff: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.client = client
        self.queue_url = queue_url
        self.attempts = attempts
        self.backoff = backoff
        self._sleep = sleep

    def send_batch(self, jobs: Sequence[str | CopyJob]) -> tuple[list[tuple[str, str]], int]:
        """Send up to ten jobs: viewer keys, or copy jobs (a refresh names the ETag to replace).

        Returns:
            The ``(key, reason)`` of the jobs that could not be sent, and the number of calls
            made.

        Raises:
            QueueUnusable: SQS refused the call itself as the client's fault.
        """
        if len(jobs) > BATCH_SIZE:
            raise ValueError(f"a batch holds at most {BATCH_SIZE} jobs")
        pending = {str(index): _job_of(job) for index, job in enumerate(jobs)}
        failures: list[tuple[str, str]] = []
        reason = "not sent"
        calls = 0
        for attempt in range(self.attempts):
            if not pending:
                break
            if attempt:
                self._sleep(self.backoff * 2 ** (attempt - 1))
            entries = [{"Id": i, "MessageBody": job.to_json()} for i, job in pending.items()]
            calls += 1
            try:
                response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except ClientError as exc:
                if _fatal(exc):
                    raise QueueUnusable(
                        f"SendMessageBatch to {self.queue_url} failed: {exc}"
                    ) from exc
                reason = f"SendMessageBatch failed: {exc}"
                log.warning("%s (attempt %d of %d)", reason, attempt + 1, self.attempts)
                continue
            except BotoCoreError as exc:
                # botocore has retried the call already; our attempts cover longer outages.
                reason = f"SendMessageBatch failed: {exc}"
                log.warning("%s (attempt %d of %d)", reason, attempt + 1, self.attempts)
                continue
            for entry in response.get("Successful", []):
                pending.pop(str(entry["Id"]), None)
            for entry in response.get("Failed", []):
                why = f"{entry.get('Code', 'error')}: {entry.get('Message', '')}".rstrip(": ")
                if entry.get("SenderFault"):
                    job = pending.pop(str(entry["Id"]), None)
                    if job is not None:
                        failures.append((job.key, why))
                else:
                    reason = why
        failures.extend((job.key, reason) for job in pending.values())
        return failures, calls

    def send_all(
        self,
        keys: Iterable[str],
        *,
        concurrency: int = 8,
        failed: KeyWriter | None = None,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> EnqueueTally:
        """Send every key, ``concurrency`` batches at a time.

        An exception raised by ``keys`` itself (a listing that failed) stops the run: the
        batches in flight finish and :attr:`EnqueueTally.error` says why.

        Raises:
            QueueUnusable: SQS refused a call as the client's fault (no such queue, access
                denied); the jobs sent until then stay in the queue.

        Args:
            keys: The viewer keys to enqueue (read lazily).
            concurrency: Batch calls in flight.
            failed: Receives the keys that could not be sent.
            on_batch: Called with ``(sent, failed)`` after each batch (progress display).
        """
        tally = EnqueueTally()
        slots = threading.BoundedSemaphore(2 * max(concurrency, 1))
        fatal: list[QueueUnusable] = []

        def work(batch: list[str]) -> None:
            try:
                failures, calls = self.send_batch(batch)
            except QueueUnusable as exc:
                fatal.append(exc)
                slots.release()
                return
            except Exception as exc:  # keep the other batches going; report these keys
                log.exception("sending a batch failed unexpectedly")
                failures, calls = [(key, f"{type(exc).__name__}: {exc}") for key in batch], 0
            finally:
                slots.release()
            tally.add(len(batch) - len(failures), failures, calls)
            if failed is not None:
                for key, _ in failures:
                    failed.write(key)
            if on_batch is not None:
                on_batch(len(batch) - len(failures), len(failures))

        with ThreadPoolExecutor(max(concurrency, 1), thread_name_prefix="backorigin-sqs") as pool:
            batches = _batches(keys, BATCH_SIZE)
            try:
                while not fatal:
                    try:
                        batch = next(batches)
                    except StopIteration:
                        break
                    except Exception as exc:  # the keys' source failed (a listing, a file)
                        log.error("stopping: %s", exc)
                        tally.error = f"{type(exc).__name__}: {exc}"
                        break
                    slots.acquire()
                    pool.submit(work, batch)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        if fatal:
            raise fatal[0]
        return tally


def _batches(keys: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(keys)
    while batch := list(islice(iterator, size)):
        yield batch
