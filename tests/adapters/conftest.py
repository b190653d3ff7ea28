"""Fixtures of the adapter tests: one real local HTTP origin per session, adapters on it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("backorigin.testing.conformance")

import urllib3  # noqa: E402
from cloudfront_support import cloudfront_fetch  # noqa: E402

from backorigin.adapters.http import HttpAdapter, Resolver  # noqa: E402
from backorigin.config.origins import HttpOrigin  # noqa: E402
from backorigin.config.secrets import SecretResolver  # noqa: E402
from backorigin.testing.http_origin import HttpOriginServer  # noqa: E402
from backorigin.types import OriginRequest, OriginSpec  # noqa: E402

SECRETS = {
    "ORIGIN_PASSWORD": "pa55-w0rd-9f2c41",
    "ORIGIN_TOKEN": "t0ken-7d1e88a0",
    "ORIGIN_API_KEY": "k3y-44ab19ce",
}
"""Secret values the adapters read (from a fake environment); tests check they never leak."""

MakeAdapter = Callable[..., HttpAdapter]


@pytest.fixture(scope="session")
def origin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpOriginServer]:
    """The local HTTP origin every HTTP test shares (each test uses its own keys)."""
    root: Path = tmp_path_factory.mktemp("origin")
    with HttpOriginServer(root) as server:
        yield server


@pytest.fixture
def make_http_adapter(origin_server: HttpOriginServer) -> Iterator[MakeAdapter]:
    """Build HttpAdapters on the local origin: no retries, no backoff unless asked for."""
    made: list[HttpAdapter] = []

    def make(
        *,
        resolver: Resolver | None = None,
        environ: dict[str, str] | None = None,
        **fields: Any,
    ) -> HttpAdapter:
        settings: dict[str, Any] = {
            "name": "legacy",
            "type": "http",
            "base_url": origin_server.url,
            "retries": 0,
            "backoff": 0,
            "connect_timeout": 2,
            "read_timeout": 5,
            **fields,
        }
        secrets = SecretResolver(environ=dict(SECRETS if environ is None else environ))
        adapter = HttpAdapter(
            HttpOrigin.model_validate(settings), secrets=secrets, resolver=resolver
        )
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


@pytest.fixture
def origin_secrets() -> dict[str, str]:
    """The secret values behind the adapters' ``{secret: {env: ...}}`` references."""
    return dict(SECRETS)


@pytest.fixture
def ns() -> str:
    """A key namespace of the test's own on the shared origin."""
    return f"t-{uuid.uuid4().hex[:12]}/"


CloudFrontFetch = Callable[[OriginSpec, OriginRequest], urllib3.BaseHTTPResponse]


@pytest.fixture
def via_cloudfront() -> CloudFrontFetch:
    """:func:`cloudfront_fetch`: send a signed origin request with CloudFront's headers added."""
    return cloudfront_fetch
