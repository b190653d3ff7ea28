"""HTTP header values every adapter reads the same way: HTTP-dates and ``Retry-After``."""

from __future__ import annotations

__all__ = ["http_date", "retry_after_seconds"]

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def http_date(value: str | None) -> datetime | None:
    """An HTTP-date (RFC 9110) as an aware datetime; None if absent or unreadable."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    moment = http_date(value)
    if moment is None:
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
