"""The shared read path: one status table per protocol, and resuming on a real HTTP origin."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from backorigin.adapters.http import HttpAdapter
from backorigin.adapters.read import WireProtocol, status_error
from backorigin.errors import (
    InvalidRange,
    ObjectNotFound,
    OriginError,
    PermissionDenied,
    PreconditionFailed,
    TransientOriginError,
    Unauthenticated,
)
from backorigin.testing.conformance import payload
from backorigin.testing.http_origin import HttpOriginServer
from backorigin.types import ByteRange, GetOptions

MakeAdapter = Callable[..., HttpAdapter]
PROTOCOLS: tuple[WireProtocol, ...] = ("http", "s3", "gcs", "azure")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, ObjectNotFound),
        (410, ObjectNotFound),
        (401, Unauthenticated),
        (403, PermissionDenied),
        (412, PreconditionFailed),
        (304, PreconditionFailed),
        (416, InvalidRange),
        (408, TransientOriginError),
        (429, TransientOriginError),
        (500, TransientOriginError),
        (503, TransientOriginError),
        (400, OriginError),
    ],
)
def test_every_protocol_maps_statuses_alike(
    protocol: WireProtocol, status: int, error: type[OriginError]
) -> None:
    mapped = status_error(status, "GET 'k'", protocol=protocol, retry_after=3.0)
    assert type(mapped) is error
    assert str(status) in str(mapped) or error is PreconditionFailed
    if error is TransientOriginError:
        assert isinstance(mapped, TransientOriginError)
        assert mapped.retry_after == 3.0


@pytest.mark.parametrize(
    ("protocol", "status", "code", "error"),
    [
        ("s3", 404, "NoSuchVersion", PreconditionFailed),
        ("s3", 503, "SlowDown", TransientOriginError),
        ("s3", 400, "RequestTimeout", TransientOriginError),
        ("s3", 403, "SignatureDoesNotMatch", Unauthenticated),
        ("s3", 403, "AccessDenied", PermissionDenied),
        ("s3", None, "NoSuchKey", ObjectNotFound),
        ("azure", 403, "AuthenticationFailed", Unauthenticated),
        ("azure", 403, "AuthorizationPermissionMismatch", PermissionDenied),
        ("azure", 409, "PublicAccessNotPermitted", PermissionDenied),
        ("azure", 400, "InvalidHeaderValue", OriginError),
    ],
)
def test_error_codes_refine_the_status(
    protocol: WireProtocol, status: int | None, code: str, error: type[OriginError]
) -> None:
    mapped = status_error(status, "GET 'k'", protocol=protocol, code=code)
    assert type(mapped) is error


def test_a_408_from_an_http_origin_is_retried(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(ns + "slow-client", b"eventually")
    origin_server.fail(ns + "slow-client", times=1, status=408)
    adapter = make_http_adapter(retries=1)
    assert adapter.read_bytes(ns + "slow-client") == b"eventually"
    assert len(origin_server.requests(ns + "slow-client")) == 2


def test_a_dropped_body_resumes_pinned_from_the_first_missing_byte(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    data = payload(900_000, "drops")
    origin_server.put(ns + "drops", data)
    origin_server.drop_after(ns + "drops", 250_000, times=2)
    adapter = make_http_adapter()
    window = ByteRange.bounded(100_000, 800_000)
    with adapter.get(ns + "drops", GetOptions(range=window)) as result:
        assert result.readall() == data[100_000:800_000]
        assert result.resumes == 2
        etag = result.info.etag
    sent = [r.headers for r in origin_server.requests(ns + "drops")]
    assert [h["range"] for h in sent] == [
        "bytes=100000-799999",
        "bytes=350000-799999",
        "bytes=600000-799999",
    ]
    # The first request was unpinned; every resume is pinned to what the first answer said.
    assert "if-match" not in sent[0]
    assert [h["if-match"] for h in sent[1:]] == [etag, etag]


def test_a_body_that_keeps_dropping_fails_after_the_attempts(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(ns + "always", payload(300_000, "always"))
    origin_server.drop_after(ns + "always", 1_000)
    result = make_http_adapter().get(ns + "always", attempts=3)
    with pytest.raises(TransientOriginError, match="failed 3 times"):
        result.readall()
    assert len(origin_server.requests(ns + "always")) == 3


def test_a_get_can_stand_in_for_a_head(
    origin_server: HttpOriginServer, make_http_adapter: MakeAdapter, ns: str
) -> None:
    origin_server.put(ns + "small", b"small object", headers={"Content-Type": "text/plain"})
    adapter = make_http_adapter()
    with adapter.get(ns + "small") as result:
        assert result.readall() == b"small object"
        assert result.info == adapter.head(ns + "small")
    assert [r.method for r in origin_server.requests(ns + "small")] == ["GET", "HEAD"]
