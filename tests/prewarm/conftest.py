"""Fixtures of the prewarm tests: `backorigin prewarm` run as users run it, against real servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from prewarm_helpers import REGION

from backorigin.testing.http_origin import HttpOriginServer


@pytest.fixture(scope="module")
def origin() -> Iterator[HttpOriginServer]:
    with HttpOriginServer() as server:
        yield server


@pytest.fixture
def environment(s3_credentials: dict[str, str]) -> dict[str, str]:
    """The environment of a `backorigin` process: the session SeaweedFS's credentials."""
    return {**os.environ, **s3_credentials}


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """A real SQS API (moto) on 127.0.0.1."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def sqs(moto: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=moto,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def queue_url(sqs: Any) -> str:
    """A fresh copy queue."""
    return str(sqs.create_queue(QueueName=f"copy-{uuid.uuid4().hex[:12]}")["QueueUrl"])
