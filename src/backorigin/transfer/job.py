"""The copy job: one message on the copy queue, as the edge function, prewarm and reconcile
write it and the fetcher reads it; and the region a copy queue's URL names, which every
sender signs its requests for.

The body is JSON: ``{"key": KEY}``, or ``{"key": KEY, "replace": ETAG}`` for a refresh (the
fetcher then replaces exactly the stale copy with that ETag). Every sender writes it with
:meth:`CopyJob.to_json` and the fetcher reads it with :meth:`CopyJob.from_json`, so a job a
viewer's request caused cannot be told from one prewarm sent.

This module is on the edge function's miss path, whose cold start is budgeted: it imports
only :mod:`json` (loaded by any Lambda runtime) and :mod:`backorigin.errors`, never the copy
engine, pydantic or an SDK.
"""

from __future__ import annotations

__all__ = ["CopyJob", "MalformedJob", "queue_region"]

import json

from backorigin.errors import BackoriginError


class MalformedJob(BackoriginError, ValueError):
    """A copy job's body is not a job: not JSON, not an object, or a field of the wrong type.

    Such a job can never succeed: the fetcher drops it rather than retrying it.
    """


class CopyJob:
    """One copy job: the viewer key to copy, and for a refresh the ETag of the copy to replace.

    Fields this version does not know are ignored when reading, so a job written by a newer
    sender is still copied.

    Args:
        key: The viewer key (the S3 key below the bucket prefix). It is validated by the copy
            engine, not here: an invalid key is a failed copy, not a malformed job.
        replace: For a refresh, the ETag of the stale copy in the bucket; the copy replaces
            exactly that object.

    Raises:
        MalformedJob: ``key`` or ``replace`` is not a string.

    Example:
        >>> CopyJob("images/a.jpg", replace="9b2cf535").to_json()
        '{"key": "images/a.jpg", "replace": "9b2cf535"}'
        >>> CopyJob.from_json('{"key": "images/a.jpg"}')
        CopyJob(key='images/a.jpg', replace=None)
    """

    # A plain class: a dataclass is generated with exec() at import, which the edge's cold
    # start would pay for.
    __slots__ = ("key", "replace")

    key: str
    replace: str | None

    def __init__(self, key: str, replace: str | None = None) -> None:
        if not isinstance(key, str):
            raise MalformedJob(f"a copy job's key must be a string, not {_kind(key)}")
        if replace is not None and not isinstance(replace, str):
            raise MalformedJob(f"a copy job's replace must be a string, not {_kind(replace)}")
        self.key = key
        self.replace = replace

    def to_json(self) -> str:
        """The message body: ``{"key": KEY}``, with ``"replace": ETAG`` for a refresh."""
        if self.replace is None:
            return json.dumps({"key": self.key})
        return json.dumps({"key": self.key, "replace": self.replace})

    @classmethod
    def from_json(cls, body: object) -> CopyJob:
        """Read a message body written by :meth:`to_json`.

        Args:
            body: The body as received (``str`` or ``bytes``); anything else is refused, so a
                record without a body can be handed over as it is.

        Raises:
            MalformedJob: The body is not JSON, not an object, has no ``key``, or a field is of
                the wrong type.
        """
        if not isinstance(body, str | bytes | bytearray):
            raise MalformedJob(f"a copy job's body must be JSON text, not {_kind(body)}")
        try:
            raw = json.loads(body)
        except (ValueError, RecursionError) as exc:  # ValueError includes JSONDecodeError
            raise MalformedJob(f"a copy job's body is not JSON: {_short(exc)}") from None
        if not isinstance(raw, dict):
            raise MalformedJob(f"a copy job's body must be a JSON object, not {_kind(raw)}")
        if "key" not in raw:
            raise MalformedJob('a copy job\'s body has no "key"')
        return cls(raw["key"], raw.get("replace"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CopyJob):
            return NotImplemented
        return self.key == other.key and self.replace == other.replace

    def __hash__(self) -> int:
        return hash((self.key, self.replace))

    def __repr__(self) -> str:
        return f"CopyJob(key={self.key!r}, replace={self.replace!r})"


def queue_region(queue_url: str) -> str | None:
    """The AWS region an SQS queue URL names, or None for a queue outside AWS (moto, ElasticMQ).

    Queue URLs name their region in the host: ``https://sqs.eu-west-1.amazonaws.com/…``, the
    legacy ``https://eu-west-1.queue.amazonaws.com/…``, and both under ``amazonaws.com.cn``.

    Example:
        >>> queue_region("https://sqs.eu-west-1.amazonaws.com/123456789012/copies")
        'eu-west-1'
        >>> queue_region("http://127.0.0.1:9324/000000000000/copies") is None
        True
    """
    from urllib.parse import urlsplit  # loaded on the edge's miss path already

    host = (urlsplit(queue_url).hostname or "").lower()
    for suffix in (".amazonaws.com", ".amazonaws.com.cn"):
        if host.endswith(suffix):
            labels = host[: -len(suffix)].split(".")
            if len(labels) == 2 and labels[0] == "sqs" and labels[1]:
                return labels[1]
            if len(labels) == 2 and labels[1] == "queue" and labels[0]:
                return labels[0]
    return None


def _kind(value: object) -> str:
    names = {type(None): "null", str: "a string", bool: "a boolean", list: "an array"}
    names.update({int: "a number", float: "a number", dict: "an object"})
    return names.get(type(value), type(value).__name__)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"
