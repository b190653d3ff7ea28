"""An in-process copy queue with SQS's delivery semantics, drained by fetcher threads.

The edge handler sends to it through the one SQS call it uses (``send_message``); worker
threads hand each message to the fetcher handler as an SQS-shaped event, exactly as the SQS
event source mapping would, and honour its partial batch response: a reported message comes
back after a visibility timeout, and after ``max_receives`` attempts it is dead-lettered.
:meth:`LocalQueue.stats` reports its depth and dead letters, as SQS's queue attributes would.
"""

from __future__ import annotations

__all__ = ["LocalQueue"]

import itertools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backorigin.local.counters import QueueStats

log = logging.getLogger("backorigin.local")


@dataclass(order=True)
class _Message:
    visible_at: float
    body: str = field(compare=False)
    message_id: str = field(compare=False, default_factory=lambda: str(uuid.uuid4()))
    receives: int = field(compare=False, default=0)


class LocalQueue:
    """A copy queue plus ``workers`` threads running ``handler`` on SQS-shaped events.

    Args:
        handler: The fetcher handler (``handler(event, context) -> dict``).
        workers: Threads draining the queue.
        visibility_timeout: Seconds before a message whose copy failed is delivered again.
        max_receives: Deliveries before a message is moved to :attr:`dead_letters`.
    """

    url = "local://backorigin-copy"

    def __init__(
        self,
        handler: Callable[[dict[str, Any], Any], dict[str, Any]],
        *,
        workers: int = 2,
        visibility_timeout: float = 2.0,
        max_receives: int = 5,
    ) -> None:
        self._handler = handler
        self._queue: queue.PriorityQueue[_Message] = queue.PriorityQueue()
        self._visibility = visibility_timeout
        self._max_receives = max_receives
        self._stop = threading.Event()
        # Guarded by _idle: read by the server's status endpoint while workers change them.
        self._pending = 0
        self._in_flight = 0
        self._enqueued = 0
        self._idle = threading.Condition()
        self._counter = itertools.count()
        self.dead_letters: list[str] = []
        self._threads = [
            threading.Thread(target=self._work, name=f"backorigin-fetcher-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # --- the SQS call the edge handler makes --------------------------------------------------

    def send_message(self, *, QueueUrl: str, MessageBody: str) -> dict[str, str]:  # noqa: N803
        """Accept a copy job (the SQS ``SendMessage`` shape)."""
        message = _Message(time.monotonic(), MessageBody)
        with self._idle:
            self._pending += 1
            self._enqueued += 1
        self._queue.put(message)
        return {"MessageId": message.message_id}

    # --- workers -----------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            delay = message.visible_at - time.monotonic()
            if delay > 0:  # not visible yet: put it back and wait a little
                self._queue.put(message)
                self._stop.wait(min(delay, 0.2))
                continue
            message.receives += 1
            event = {"Records": [self._record(message)]}
            with self._idle:
                self._in_flight += 1
            try:
                response = self._handler(event, None)
                failed = bool(response.get("batchItemFailures"))
            except Exception:
                log.exception("the fetcher failed on %s", message.body)
                failed = True
            finally:
                with self._idle:
                    self._in_flight -= 1
            if failed and message.receives < self._max_receives:
                message.visible_at = time.monotonic() + self._visibility
                self._queue.put(message)
                continue
            if failed:
                log.error(
                    "copy job dead-lettered after %d attempts: %s", message.receives, message.body
                )
            with self._idle:
                if failed:
                    self.dead_letters.append(message.body)
                self._pending -= 1
                self._idle.notify_all()

    def _record(self, message: _Message) -> dict[str, Any]:
        now = str(int(time.time() * 1000))
        return {
            "messageId": message.message_id,
            "receiptHandle": f"local-{next(self._counter)}",
            "body": message.body,
            "attributes": {
                "ApproximateReceiveCount": str(message.receives),
                "SentTimestamp": now,
                "SenderId": "backorigin-local",
                "ApproximateFirstReceiveTimestamp": now,
            },
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:local:000000000000:backorigin-copy",
            "awsRegion": "local",
        }

    def stats(self) -> QueueStats:
        """The queue's depth, jobs in flight, jobs accepted so far and dead letters."""
        with self._idle:
            return QueueStats(
                depth=self._pending,
                in_flight=self._in_flight,
                enqueued=self._enqueued,
                dead_letters=len(self.dead_letters),
            )

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every accepted job is finished or dead-lettered; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def stop(self) -> None:
        """Stop the workers (jobs still queued are dropped; the edge re-enqueues on a miss)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
