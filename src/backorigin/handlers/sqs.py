"""A minimal SQS client for the edge function: ``SendMessage`` over the AWS JSON protocol.

It speaks the protocol SQS documents for its API (``POST /`` with
``X-Amz-Target: AmazonSQS.SendMessage`` and an ``application/x-amz-json-1.0`` body), signs
with :mod:`backorigin.handlers.sigv4` and keeps one connection per endpoint, so the first
miss in a container costs one request instead of importing boto3. Credentials come from the
environment variables Lambda sets for the function's role.
"""

from __future__ import annotations

__all__ = ["SqsClient", "SqsError"]

import hashlib
import http.client
import json
import os
import threading
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from backorigin.errors import BackoriginError
from backorigin.handlers import sigv4
from backorigin.transfer.job import queue_region

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the lean path
if TYPE_CHECKING:
    from typing import Any

Transport = Callable[[str, str, Mapping[str, str], bytes, float], tuple[int, bytes]]
"""``(method, url, headers, body, timeout) -> (status, body)``; raises ``OSError`` on failure."""

_RETRIED = frozenset({500, 502, 503, 504})
_THROTTLED = ("RequestThrottled", "ThrottlingException", "ServiceUnavailable")


class SqsError(BackoriginError):
    """SQS refused the message, or could not be reached."""


class _Connections:
    """One kept-alive connection per endpoint; a broken one is replaced on the next use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: dict[tuple[str, str, int | None], http.client.HTTPConnection] = {}

    def __call__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> tuple[int, bytes]:
        parts = urlsplit(url)
        where = (parts.scheme, parts.hostname or "", parts.port)
        with self._lock:
            connection = self._pool.pop(where, None)
        if connection is None:
            kind = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            connection = kind(where[1], where[2], timeout=timeout)
        try:
            connection.request(method, parts.path or "/", body=body, headers=dict(headers))
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise OSError(f"{type(exc).__name__}: {exc}") from exc
        if response.will_close:
            connection.close()
        else:
            with self._lock:
                self._pool.setdefault(where, connection)
        return response.status, data


class SqsClient:
    """Sends messages to SQS queues; a drop-in for the one boto3 call the edge makes.

    Args:
        region: The region to sign for when the queue URL does not name one (local
            endpoints); AWS queue URLs carry their region.
        environ: Where the credentials are read, at every call (they rotate).
        timeout: Seconds for connecting and for the answer.
        attempts: Tries in all, for connection failures, 5xx and throttling.
        transport: Sends one request (default: kept-alive ``http.client`` connections).
    """

    def __init__(
        self,
        region: str | None = None,
        *,
        environ: Mapping[str, str] = os.environ,
        timeout: float = 2.0,
        attempts: int = 2,
        transport: Transport | None = None,
    ) -> None:
        self.region = region
        self._environ = environ
        self._timeout = timeout
        self._attempts = max(1, attempts)
        self._transport: Transport = transport if transport is not None else _Connections()

    def send_message(self, *, QueueUrl: str, MessageBody: str) -> dict[str, Any]:  # noqa: N803
        """Send ``MessageBody`` to the queue at ``QueueUrl`` (boto3's argument names).

        Returns:
            SQS's answer (``MessageId``, ``MD5OfMessageBody``).

        Raises:
            SqsError: no credentials, SQS refused the message, or it could not be reached.
        """
        credentials = sigv4.Credentials.from_environ(self._environ)
        if credentials is None:
            raise SqsError("no AWS credentials in the environment (AWS_ACCESS_KEY_ID)")
        parts = urlsplit(QueueUrl)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SqsError(f"not a queue URL: {QueueUrl!r}")
        region = queue_region(QueueUrl) or self.region or "us-east-1"
        endpoint = f"{parts.scheme}://{parts.netloc}/"
        body = json.dumps({"QueueUrl": QueueUrl, "MessageBody": MessageBody}).encode()
        headers = {
            "host": parts.netloc,
            "content-type": "application/x-amz-json-1.0",
            "x-amz-target": "AmazonSQS.SendMessage",
        }
        failure = "no attempt was made"
        for _ in range(self._attempts):
            signed = dict(headers)
            signed.update(
                sigv4.sign(
                    "POST",
                    "/",
                    "",
                    headers,
                    body,
                    credentials=credentials,
                    region=region,
                    service="sqs",
                )
            )
            try:
                status, data = self._transport("POST", endpoint, signed, body, self._timeout)
            except OSError as exc:
                failure = f"SQS could not be reached: {exc}"
                continue
            answer = _decode(data)
            if status == 200:
                return _checked(answer, MessageBody)
            kind = str(answer.get("__type", "")).rpartition("#")[2]
            failure = f"SQS answered {status} {kind}: {answer.get('message', '')}".rstrip(": ")
            if status not in _RETRIED and kind not in _THROTTLED:
                break
        raise SqsError(failure)


def _decode(data: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(data or b"{}")
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _checked(answer: dict[str, Any], body: str) -> dict[str, Any]:
    """SQS's answer, after checking it received the body intact (as the SDKs do)."""
    digest = answer.get("MD5OfMessageBody")
    expected = hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()
    if digest is not None and digest != expected:
        raise SqsError("SQS stored a different message body (MD5 mismatch)")
    return answer
