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
import json
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from backorigin.errors import BackoriginError
from backorigin.handlers import awsjson, sigv4
from backorigin.handlers.awsjson import Connections, Transport
from backorigin.transfer.job import queue_region

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the lean path
if TYPE_CHECKING:
    from typing import Any


class SqsError(BackoriginError):
    """SQS refused the message, or could not be reached."""


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
        self._transport: Transport = transport if transport is not None else Connections()

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
        try:
            answer = awsjson.call(
                self._transport,
                endpoint,
                target="AmazonSQS.SendMessage",
                content_type="application/x-amz-json-1.0",
                payload=body,
                credentials=credentials,
                region=region,
                service="sqs",
                attempts=self._attempts,
                timeout=self._timeout,
            )
        except awsjson.CallFailed as failed:
            if failed.unreachable is not None:
                raise SqsError(f"SQS could not be reached: {failed.unreachable}") from None
            reason = f"SQS answered {failed.status} {failed.kind}: {failed.message}"
            raise SqsError(reason.rstrip(": ")) from None
        return _checked(answer, MessageBody)


def _checked(answer: dict[str, Any], body: str) -> dict[str, Any]:
    """SQS's answer, after checking it received the body intact (as the SDKs do)."""
    digest = answer.get("MD5OfMessageBody")
    expected = hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()
    if digest is not None and digest != expected:
        raise SqsError("SQS stored a different message body (MD5 mismatch)")
    return answer
