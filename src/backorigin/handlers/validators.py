"""Validators that survive the migration: S3 answers with the old origin's ETag and date.

A copied object keeps, in its user metadata, the ETag and Last-Modified the old origin gave
it (``x-amz-meta-backorigin-origin-etag`` / ``-origin-last-modified``). S3 computes its own
ETag, so without help every browser and cache that holds the object from the old origin would
download it again after it moved. The origin-response trigger on the S3 primary therefore:

* puts the old validators back in the response (CloudFront lets an origin-response trigger
  change any header but ``Transfer-Encoding`` and ``Via``), so CloudFront caches them and
  answers viewers' conditional requests against them itself;
* turns a 200/206 into a 304 (empty body, as the trigger may set the body and any status from
  200 to 599) when the origin request carried ``If-None-Match`` or ``If-Modified-Since`` that
  the old validators satisfy: S3 compared them with its own ETag and date and sent the whole
  object, although the requester's copy is current.

This runs on every S3 hit, so it imports nothing until an object carries provenance.
"""

from __future__ import annotations

__all__ = ["ETAG_META", "LAST_MODIFIED_META", "http_date", "restore_validators"]

ETAG_META = "x-amz-meta-backorigin-origin-etag"
LAST_MODIFIED_META = "x-amz-meta-backorigin-origin-last-modified"

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Representation metadata a 304 should not carry (RFC 9110 §15.4.5); caches keep theirs.
_NOT_IN_304 = (
    "content-length",
    "content-range",
    "content-type",
    "content-encoding",
    "content-language",
    "content-disposition",
    "content-md5",
)


def _first(headers: dict[str, object], name: str) -> str | None:
    values = headers.get(name)
    if isinstance(values, list) and values and isinstance(values[0], dict):
        value = values[0].get("value")
        return value if isinstance(value, str) else None
    return None


# Provenance date → (epoch, HTTP-date): hot objects are asked for again and again.
_DATES: dict[str, tuple[int, str] | None] = {}
_DATES_KEPT = 4096


def _dates_of_iso(text: str) -> tuple[int, str] | None:
    if text in _DATES:
        return _DATES[text]
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        result = None
    else:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        epoch = int(moment.timestamp())
        result = (epoch, http_date(epoch))
    if len(_DATES) >= _DATES_KEPT:
        _DATES.clear()
    _DATES[text] = result
    return result


def http_date(epoch: int) -> str:
    """IMF-fixdate (RFC 9110 §5.6.7) for ``epoch``, independent of the locale."""
    import time

    t = time.gmtime(epoch)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def _epoch_of_http_date(text: str) -> int | None:
    """Seconds since the epoch of an HTTP-date (IMF-fixdate, or the obsolete forms)."""
    from email.utils import parsedate_tz

    parsed = parsedate_tz(text)
    if parsed is None:
        return None
    from calendar import timegm

    return timegm(parsed[:6]) - (parsed[9] or 0)


def _quoted(etag: str) -> str:
    if etag[:1] == '"' or etag[:3] == 'W/"':
        return etag
    etag = etag.strip()
    if etag.startswith(('"', 'W/"')):
        return etag
    return f'"{etag}"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def _none_match(header: str, etag: str) -> bool:
    """Whether ``If-None-Match: header`` fails for ``etag`` (weak comparison, §13.1.2)."""
    if header == etag or header.strip() == "*":
        return True
    wanted = _opaque(etag)
    return any(_opaque(candidate) == wanted for candidate in header.split(","))


def restore_validators(request: dict[str, object], response: dict[str, object]) -> None:
    """Apply the old origin's validators to an S3 response, in place (see the module)."""
    headers = response.get("headers")
    if not isinstance(headers, dict):
        return
    etag = _first(headers, ETAG_META)
    modified_iso = _first(headers, LAST_MODIFIED_META)
    if etag is None and modified_iso is None:
        return
    dates = _dates_of_iso(modified_iso) if modified_iso else None
    modified = dates[0] if dates is not None else None
    if etag:
        etag = _quoted(etag)
        headers["etag"] = [{"key": "ETag", "value": etag}]
    if dates is not None:
        headers["last-modified"] = [{"key": "Last-Modified", "value": dates[1]}]
    if str(response.get("status")) not in ("200", "206"):
        return
    asked = request.get("headers")
    if not isinstance(asked, dict) or request.get("method", "GET") not in ("GET", "HEAD"):
        return
    # If-Modified-Since counts only without If-None-Match (RFC 9110 §13.2.2).
    none_match = _first(asked, "if-none-match")
    if none_match is not None:
        current = bool(etag) and _none_match(none_match, str(etag))
    else:
        since_text = _first(asked, "if-modified-since")
        since = _epoch_of_http_date(since_text) if since_text else None
        current = since is not None and modified is not None and modified <= since
    if current:
        response["status"] = "304"
        response["statusDescription"] = "Not Modified"
        for name in _NOT_IN_304:
            headers.pop(name, None)
        response["body"] = ""
