"""Secrets of one config spread over several regions are each read in their own region."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from backorigin.config import SecretRef, SecretResolver

# The same secret name in three regions, each holding a different value.
VALUES = {"eu-west-1": "dublin-value", "ap-southeast-2": "sydney-value", "us-east-1": "home"}


@pytest.fixture
def arns(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        created = {}
        for region, value in VALUES.items():
            client = boto3.client("secretsmanager", region_name=region)
            created[region] = client.create_secret(Name="app/token", SecretString=value)["ARN"]
        yield created


def resolve(resolver: SecretResolver, secret_id: str) -> str:
    ref = SecretRef.model_validate({"secret": {"aws_secretsmanager": secret_id}})
    return resolver.resolve(ref).get_secret_value()


def test_each_arn_is_read_in_its_own_region(arns: dict[str, str]) -> None:
    resolver = SecretResolver()
    assert resolve(resolver, arns["eu-west-1"]) == "dublin-value"
    assert resolve(resolver, arns["ap-southeast-2"]) == "sydney-value"


def test_a_name_is_read_in_the_sessions_region_beside_arns(arns: dict[str, str]) -> None:
    resolver = SecretResolver()
    assert resolve(resolver, arns["ap-southeast-2"]) == "sydney-value"
    assert resolve(resolver, "app/token") == "home"
