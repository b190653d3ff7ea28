"""The GCS adapter's one translation of SDK and transport exceptions into backorigin's errors.

Statuses go through the shared GCS table (:func:`backorigin.adapters.read.status_error`);
modules that were never imported are not looked at, so the edge stays lean.
"""

from __future__ import annotations

__all__ = ["origin_error", "translated", "translating"]

import contextlib
import sys
import xml.etree.ElementTree as ET
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

from backorigin.adapters.headers import retry_after_seconds
from backorigin.adapters.read import status_error
from backorigin.errors import (
    BackoriginError,
    OriginError,
    TransientOriginError,
    Unauthenticated,
)

_T = TypeVar("_T")


def _loaded(name: str) -> Any:
    """A module if it is already imported, else None (an exception from a module that was
    never imported cannot be an instance of its classes, and the edge stays lean)."""
    return sys.modules.get(name)


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None)
    return retry_after_seconds(headers.get("retry-after") if headers is not None else None)


def origin_error(exc: BaseException, what: str) -> OriginError | None:
    """The :mod:`backorigin.errors` exception for an SDK or transport failure, or None.

    This is the adapter's only translation of foreign exceptions. Messages name the status
    and the exception class, never the SDK's text (it can carry URLs and server bodies).
    None means the exception is not an origin failure (a bug): the caller re-raises it.
    """
    api = _loaded("google.api_core.exceptions")
    auth = _loaded("google.auth.exceptions")
    media = _loaded("google.cloud.storage.exceptions")
    requests_exc = _loaded("requests.exceptions")
    urllib3_exc = _loaded("urllib3.exceptions")
    kind = type(exc).__name__

    if api is not None and isinstance(exc, api.RetryError):
        cause = exc.cause
        inner = origin_error(cause, what) if isinstance(cause, BaseException) else None
        retry_after = inner.retry_after if isinstance(inner, TransientOriginError) else None
        detail = f" (last: {inner})" if inner is not None else ""
        return TransientOriginError(
            f"{what}: still failing when the retry time ran out{detail}", retry_after=retry_after
        )

    status: int | None = None
    response: Any = None
    if api is not None and isinstance(exc, api.GoogleAPICallError):
        status = exc.code if isinstance(exc.code, int) else None
        response = exc.response
    elif media is not None and isinstance(exc, media.InvalidResponse):
        response = exc.response
        status = getattr(response, "status_code", None)
    if status is not None:
        return status_error(
            status, f"{what} ({kind})", protocol="gcs", retry_after=_retry_after(response)
        )
    if api is not None and isinstance(exc, api.GoogleAPICallError):
        return OriginError(f"{what}: {kind}")

    if media is not None and isinstance(exc, media.DataCorruption):
        return TransientOriginError(f"{what}: the download failed its checksum ({kind})")
    if auth is not None:
        if isinstance(exc, auth.TransportError):
            return TransientOriginError(f"{what}: cannot reach the token endpoint ({kind})")
        if isinstance(exc, auth.RefreshError) and getattr(exc, "retryable", False):
            return TransientOriginError(f"{what}: minting an access token failed ({kind})")
        if isinstance(exc, auth.DefaultCredentialsError):
            return Unauthenticated(f"{what}: no Application Default Credentials ({kind})")
        if isinstance(exc, auth.GoogleAuthError):
            # RefreshError (the token endpoint refused the key), InvalidOperation (a 401
            # answered to anonymous credentials, which cannot be refreshed), ...
            return Unauthenticated(f"{what}: the credentials were refused ({kind})")
    transport: tuple[type[BaseException], ...] = (OSError,)
    if requests_exc is not None:
        transport += (requests_exc.RequestException,)
    if urllib3_exc is not None:
        transport += (urllib3_exc.HTTPError,)
    http_client = _loaded("http.client")
    if http_client is not None:
        transport += (http_client.HTTPException,)
    if isinstance(exc, transport):
        return TransientOriginError(f"{what}: connection failed ({kind})")
    if isinstance(exc, ET.ParseError):
        return OriginError(f"{what}: the answer is not valid XML")
    return None


@contextlib.contextmanager
def translating(what: str) -> Iterator[None]:
    """Re-raise SDK and transport exceptions as :mod:`backorigin.errors` ones."""
    try:
        yield
    except BackoriginError:
        raise
    except Exception as exc:
        error = origin_error(exc, what)
        if error is None:
            raise
        raise error from exc


def translated(items: Iterator[_T], what: str) -> Generator[_T]:
    """``items``, with failures while iterating translated like :func:`translating`."""
    with translating(what):
        yield from items
