"""Synthesize every example (and five prop variants) once per test run, with cdk-nag on.

Synthesis is slow (jsii, Lambda bundles), so one session fixture builds every app, attaches
cdk-nag's AwsSolutions pack, synthesizes and keeps the results; the tests only read them.
"""

from __future__ import annotations

from typing import Any

import pytest
from cdk_support import EDGE_BUNDLE_SIZES, Run, Synthesized, synthesize_all


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return synthesize_all(tmp_path_factory.mktemp("cdk"))


@pytest.fixture(scope="session")
def apps(synthesized: Run) -> dict[str, Synthesized]:
    return synthesized.apps


@pytest.fixture(scope="session")
def classic(apps: dict[str, Synthesized]) -> Synthesized:
    """The classic setup: a public GCS bucket, Origin Shield in the deploy region."""
    return apps["gcs-public"]


@pytest.fixture(scope="session")
def full(apps: dict[str, Synthesized]) -> Synthesized:
    """Every optional prop set."""
    return apps["full"]


@pytest.fixture(scope="session")
def adopted(apps: dict[str, Synthesized]) -> Synthesized:
    """An existing bucket, AWS S3 origins and a secret referenced by name."""
    return apps["adopted"]


@pytest.fixture(scope="session")
def managed(apps: dict[str, Synthesized]) -> Synthesized:
    """An imported SSE-KMS bucket whose policy the construct manages."""
    return apps["managed"]


@pytest.fixture(scope="session")
def owned(apps: dict[str, Synthesized]) -> Synthesized:
    """The app's own SSE-KMS bucket, defined beside the construct."""
    return apps["owned"]


@pytest.fixture(scope="session")
def shared(apps: dict[str, Synthesized]) -> Synthesized:
    """The app's SSE-KMS bucket in another stack of the app."""
    return apps["shared"]


@pytest.fixture(scope="session")
def scheduled(apps: dict[str, Synthesized]) -> Synthesized:
    """A migration in progress with a scheduled reconcile, sized for bulk runs."""
    return apps["scheduled"]


@pytest.fixture(scope="session")
def migrated(apps: dict[str, Synthesized]) -> Synthesized:
    """The same stack after the cut-over (``migrated=True``)."""
    return apps["migrated"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not EDGE_BUNDLE_SIZES:
        return
    terminalreporter.section("Lambda@Edge bundle sizes (limit: 50 MiB zipped)")
    for name, (raw, zipped) in sorted(EDGE_BUNDLE_SIZES.items()):
        terminalreporter.write_line(
            f"{name:<20} {zipped / 2**20:6.1f} MiB zipped  ({raw / 2**20:6.1f} MiB unzipped)"
        )
