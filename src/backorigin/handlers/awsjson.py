"""One signed call over the AWS JSON protocol, with the edge's one retry rule.

The edge function's SQS and Secrets Manager clients both ``POST /`` a JSON body with an
``X-Amz-Target`` header, signed with :mod:`backorigin.handlers.sigv4`, over kept-alive
``http.client`` connections, and retry connection failures, 5xx answers and throttling the
same way. That is written once here; each client only builds its request and words its
errors.
"""

from __future__ import annotations

__all__ = ["CallFailed", "Connections", "Transport", "call"]

import http.client
import json
import threading
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from backorigin.handlers import sigv4

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the lean path
if TYPE_CHECKING:
    from typing import Any

Transport = Callable[[str, str, Mapping[str, str], bytes, float], tuple[int, bytes]]
"""``(method, url, headers, body, timeout) -> (status, body)``; raises ``OSError`` on failure."""

_RETRIED = frozenset({500, 502, 503, 504})
_THROTTLED = ("RequestThrottled", "ThrottlingException", "ServiceUnavailable")


class CallFailed(Exception):
    """The last attempt's failure: ``unreachable`` (the ``OSError``'s text) when no answer
    came, else the answer's ``status``, error ``kind`` and ``message``."""

    def __init__(
        self, *, unreachable: str | None = None, status: int = 0, kind: str = "", message: str = ""
    ) -> None:
        super().__init__(unreachable or f"{status} {kind}")
        self.unreachable = unreachable
        self.status = status
        self.kind = kind
        self.message = message


class Connections:
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


def call(
    transport: Transport,
    endpoint: str,
    *,
    target: str,
    content_type: str,
    payload: bytes,
    credentials: sigv4.Credentials,
    region: str,
    service: str,
    attempts: int,
    timeout: float,
) -> dict[str, Any]:
    """``POST`` ``payload`` to ``endpoint`` (ending in ``/``) as ``target``; the JSON answer.

    Raises:
        CallFailed: after ``attempts`` tries for connection failures, 5xx and throttling, or
            at once for any other refusal.
    """
    headers = {
        "host": urlsplit(endpoint).netloc,
        "content-type": content_type,
        "x-amz-target": target,
    }
    failure = CallFailed(unreachable="no attempt was made")
    for _ in range(max(1, attempts)):
        signed = dict(headers)
        signed.update(
            sigv4.sign(
                "POST",
                "/",
                "",
                headers,
                payload,
                credentials=credentials,
                region=region,
                service=service,
            )
        )
        try:
            status, data = transport("POST", endpoint, signed, payload, timeout)
        except OSError as exc:
            failure = CallFailed(unreachable=str(exc))
            continue
        answer = _decode(data)
        if status == 200:
            return answer
        kind = str(answer.get("__type", "")).rpartition("#")[2]
        failure = CallFailed(status=status, kind=kind, message=str(answer.get("message", "")))
        if status not in _RETRIED and kind not in _THROTTLED:
            break
    raise failure


def _decode(data: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(data or b"{}")
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}
