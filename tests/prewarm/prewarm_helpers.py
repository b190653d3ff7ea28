"""Helpers of the prewarm tests: run the command, read its summary, inspect the bucket."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REGION = "eu-west-1"
# moto's queue URLs carry no region, so the CLI takes it from the usual chain.
MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
SCRIPT = shutil.which("backorigin", path=str(Path(sys.executable).parent))


def payload(size: int, seed: str) -> bytes:
    """Deterministic bytes of ``size``, different for every seed."""
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def prewarm_argv(*args: str) -> list[str]:
    assert SCRIPT, "the backorigin script is not installed next to the interpreter"
    return [SCRIPT, "prewarm", *args]


def run_prewarm(
    env: dict[str, str], *args: str, input_text: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `backorigin prewarm ARGS` to completion."""
    return subprocess.run(
        prewarm_argv(*args),
        input=input_text,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def summary(stdout: str) -> dict[str, str]:
    """The summary table's rows, ``{label: value}``."""
    rows: dict[str, str] = {}
    for line in stdout.splitlines():
        match = re.match(r"^\s+(\S.*?\S)\s{2,}(\S.*?)\s*$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def stored_keys(s3: Any, bucket: str) -> set[str]:
    """The objects in the bucket, leases and other engine state left out."""
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return {k for k in keys if not k.startswith(".backorigin/")}


def read_all(s3: Any, bucket: str, keys: list[str]) -> dict[str, bytes]:
    """The bytes of every key, read in parallel."""

    def get(key: str) -> tuple[str, bytes]:
        return key, bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(get, keys))


def queued_keys(sqs: Any, queue_url: str) -> list[str]:
    keys: list[str] = []
    while messages := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60
    ).get("Messages", []):
        keys.extend(json.loads(m["Body"])["key"] for m in messages)
    return keys
