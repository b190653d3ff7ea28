"""Secret references resolve from env, files and Secrets Manager, cached with a TTL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from backorigin.config import SecretRef, SecretResolver, SecretUnavailable

VALUE = "s3cr3t-value-0123456789"


def ref(**source: str) -> SecretRef:
    return SecretRef.model_validate({"secret": source})


@pytest.fixture
def secretsmanager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        client.create_secret(Name="app/plain", SecretString=VALUE)
        client.create_secret(Name="app/json", SecretString=json.dumps({"token": VALUE, "n": 7}))
        client.create_secret(Name="app/binary", SecretBinary=b"\x00\x01")
        yield client


def test_env() -> None:
    resolver = SecretResolver(environ={"TOKEN": VALUE})
    assert resolver.resolve(ref(env="TOKEN")).get_secret_value() == VALUE


def test_missing_env_names_the_variable() -> None:
    with pytest.raises(SecretUnavailable, match="environment variable NOPE is not set"):
        SecretResolver(environ={}).resolve(ref(env="NOPE"))


def test_file_strips_the_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(VALUE + "\n")
    assert SecretResolver().resolve(ref(file=str(path))).get_secret_value() == VALUE


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SecretUnavailable, match="cannot read file"):
        SecretResolver().resolve(ref(file=str(tmp_path / "absent")))


def test_secrets_manager_plain_and_json_key(secretsmanager: Any) -> None:
    resolver = SecretResolver(secretsmanager_client=secretsmanager)
    assert resolver.resolve(ref(aws_secretsmanager="app/plain")).get_secret_value() == VALUE
    token = resolver.resolve(ref(aws_secretsmanager="app/json", key="token"))
    assert token.get_secret_value() == VALUE
    assert resolver.resolve(ref(aws_secretsmanager="app/json", key="n")).get_secret_value() == "7"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"aws_secretsmanager": "app/absent"}, "ResourceNotFoundException"),
        ({"aws_secretsmanager": "app/json", "key": "missing"}, "has no field 'missing'"),
        ({"aws_secretsmanager": "app/plain", "key": "token"}, "not a JSON object"),
        ({"aws_secretsmanager": "app/binary"}, "binary"),
    ],
)
def test_secrets_manager_failures(
    secretsmanager: Any, source: dict[str, str], message: str
) -> None:
    resolver = SecretResolver(secretsmanager_client=secretsmanager)
    with pytest.raises(SecretUnavailable, match=message) as info:
        resolver.resolve(ref(**source))
    assert VALUE not in str(info.value)


def test_values_are_cached_for_the_ttl_then_reread() -> None:
    environ = {"TOKEN": "first"}
    cached = SecretResolver(environ=environ, ttl=3600)
    fresh = SecretResolver(environ=environ, ttl=0)
    assert cached.resolve(ref(env="TOKEN")).get_secret_value() == "first"
    assert fresh.resolve(ref(env="TOKEN")).get_secret_value() == "first"
    environ["TOKEN"] = "rotated"
    assert cached.resolve(ref(env="TOKEN")).get_secret_value() == "first"
    assert fresh.resolve(ref(env="TOKEN")).get_secret_value() == "rotated"


def test_resolved_values_do_not_leak_through_repr() -> None:
    value = SecretResolver(environ={"T": VALUE}).resolve(ref(env="T"))
    assert VALUE not in repr(value)
    assert VALUE not in f"{value}"
