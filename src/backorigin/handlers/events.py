"""Typed views of the Lambda@Edge CloudFront events the edge function handles.

The wrappers read and write the raw event dicts in place (CloudFront expects the same shapes
back), validate just enough to fail cleanly on malformed input, and import nothing heavy.
"""

from __future__ import annotations

__all__ = [
    "CloudFrontRecord",
    "HeaderMap",
    "MalformedEvent",
    "generated_response",
]

from collections.abc import Iterator, MutableMapping

from backorigin.errors import BackoriginError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the lean path
if TYPE_CHECKING:
    from typing import Any


class MalformedEvent(BackoriginError):
    """The event does not have the shape of a CloudFront Lambda@Edge event."""


class HeaderMap:
    """CloudFront's header structure: ``{"name": [{"key": "Name", "value": "v"}, ...]}``.

    Names are the lower-cased dict keys; ``key`` keeps the original spelling.
    """

    def __init__(self, raw: MutableMapping[str, Any]) -> None:
        self.raw = raw

    def get(self, name: str) -> str | None:
        """The first value of header ``name``, if present."""
        values = self.raw.get(name.lower())
        if not values or not isinstance(values, list) or not isinstance(values[0], dict):
            return None
        value = values[0].get("value")
        return value if isinstance(value, str) else None

    def set(self, name: str, value: str, *, display: str | None = None) -> None:
        """Replace header ``name`` with one value."""
        self.raw[name.lower()] = [{"key": display or name, "value": value}]

    def remove(self, name: str) -> None:
        """Drop header ``name`` if present."""
        self.raw.pop(name.lower(), None)

    def items(self) -> Iterator[tuple[str, str]]:
        """``(lower-case name, first value)`` pairs."""
        for name in list(self.raw):
            value = self.get(name)
            if value is not None:
                yield name, value


class CloudFrontRecord:
    """The ``cf`` part of one Lambda@Edge record: config, request and (maybe) response."""

    def __init__(self, event: Any) -> None:
        try:
            cf = event["Records"][0]["cf"]
            self.event_type: str = cf["config"]["eventType"]
            self.request: dict[str, Any] = cf["request"]
            self.response: dict[str, Any] | None = cf.get("response")
            uri = self.request["uri"]
        except (KeyError, IndexError, TypeError) as exc:
            raise MalformedEvent(f"not a CloudFront event: missing {exc}") from None
        if not isinstance(uri, str) or not isinstance(self.request, dict):
            raise MalformedEvent("not a CloudFront event: request.uri is not a string")
        self.request.setdefault("headers", {})
        if not isinstance(self.request["headers"], dict):
            raise MalformedEvent("request.headers is not a mapping")
        if self.event_type == "origin-response" and not isinstance(self.response, dict):
            raise MalformedEvent("an origin-response event without a response")
        self.config: dict[str, Any] = cf["config"]

    @property
    def uri(self) -> str:
        """The request URI (percent-encoded path)."""
        return str(self.request["uri"])

    @property
    def querystring(self) -> str:
        """The query string without ``?``."""
        return str(self.request.get("querystring") or "")

    @property
    def request_headers(self) -> HeaderMap:
        """The request's headers."""
        return HeaderMap(self.request["headers"])

    @property
    def response_headers(self) -> HeaderMap:
        """The response's headers (origin-response events only)."""
        assert self.response is not None
        return HeaderMap(self.response.setdefault("headers", {}))

    @property
    def status(self) -> int:
        """The origin's status code (origin-response events only); 0 if unreadable."""
        try:
            return int((self.response or {}).get("status", 0))
        except (TypeError, ValueError):
            return 0

    @property
    def to_primary(self) -> bool:
        """Whether the request goes to the S3 bucket (the origin group's primary).

        The primary is an S3 origin; the legacy origins are custom (HTTP) origins, also when
        they are S3-compatible stores, because the edge function signs for them itself.
        """
        origin = self.request.get("origin")
        return isinstance(origin, dict) and "s3" in origin

    @property
    def custom_origin(self) -> dict[str, Any]:
        """The ``origin.custom`` block of a request to the secondary origin."""
        origin = self.request.get("origin")
        if not isinstance(origin, dict) or not isinstance(origin.get("custom"), dict):
            raise MalformedEvent("request.origin.custom is missing")
        custom: dict[str, Any] = origin["custom"]
        return custom


def generated_response(
    status: int, description: str, body: str, *, cache_seconds: int = 0
) -> dict[str, Any]:
    """A response generated at the edge (the origin is not contacted)."""
    headers = {
        "content-type": [{"key": "Content-Type", "value": "text/plain; charset=utf-8"}],
        "cache-control": [{"key": "Cache-Control", "value": f"max-age={cache_seconds}"}],
    }
    return {
        "status": str(status),
        "statusDescription": description,
        "headers": headers,
        "body": body,
    }
