"""What the directory adapter declares for a deployment, and the edge signing it needs."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from backorigin_directory import DirectoryAdapter, DirectoryOrigin

from backorigin.bundling import edge_plan, requirements_for
from backorigin.config import load_config
from backorigin.config.secrets import SecretResolver
from backorigin.types import OriginRequest

KEY = "a-signing-key-of-at-least-thirty-two-bytes"
EXAMPLE_CONFIG = Path(__file__).parent.parent / "directory-origin.yaml"


def origin(**settings: object) -> DirectoryOrigin:
    return DirectoryOrigin(
        name="disk",
        type="directory",
        root="/srv/media",
        public_url="https://media.example.com/",
        **settings,
    )


def test_the_edge_signs_with_a_short_lived_token_the_server_can_check() -> None:
    config = origin(auth={"mode": "jwt", "key": {"secret": {"env": "KEY"}}, "lifetime": 120})
    adapter = DirectoryAdapter(config, secrets=SecretResolver(environ={"KEY": KEY}))
    request = OriginRequest(method="GET", uri="/photos/cat%20one.jpg", headers={"host": "x"})
    signed = adapter.sign(request)
    scheme, token = signed.headers["authorization"].split(" ")
    claims = jwt.decode(token, KEY, algorithms=["HS256"])
    assert scheme == "Bearer"
    assert claims["sub"] == "/photos/cat%20one.jpg"
    assert claims["exp"] - claims["iat"] == 120
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, KEY + "-other", algorithms=["HS256"])


def test_without_auth_the_edge_needs_neither_the_adapter_nor_pyjwt() -> None:
    config = load_config(
        "bucket: {name: media-new}\norigins:\n"
        "  - {name: disk, type: directory, root: /srv, public_url: 'https://media.example.com/'}\n"
    )
    assert edge_plan(config)["origins"]["disk"]["lean"] is True
    assert not any(r.lower().startswith("pyjwt") for r in requirements_for(config, "edge"))


def test_the_example_deployment_declares_pyjwt_at_the_edge_only() -> None:
    config = load_config(EXAMPLE_CONFIG)
    assert edge_plan(config)["origins"]["disk"]["lean"] is False  # signed by the adapter
    assert any(r.lower().startswith("pyjwt>=") for r in requirements_for(config, "edge"))
    assert not any(r.lower().startswith("pyjwt") for r in requirements_for(config, "fetcher"))
    fetcher = DirectoryAdapter.deployment(config.origins[0], "fetcher")  # type: ignore[arg-type]
    (mount,) = fetcher.statements
    assert mount.actions == ("elasticfilesystem:ClientMount",)
    assert fetcher.reads_secrets is False
