"""Fixtures of the status and reconcile tests: an old store on each emulator, a fresh bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from reconcile_helpers import (
    Legacy,
    Setup,
    SetupFor,
    azure_origin,
    gcs_origin,
    make_setup,
    s3_origin,
)


@pytest.fixture(params=["gcs", "azure", "s3"])
def legacy(request: pytest.FixtureRequest) -> Legacy:
    """An empty old store of each type."""
    if request.param == "gcs":
        return gcs_origin(request.getfixturevalue("fake_gcs"))
    if request.param == "azure":
        return azure_origin(request.getfixturevalue("azurite"))
    return s3_origin(
        request.getfixturevalue("seaweedfs"),
        request.getfixturevalue("s3_client"),
        request.getfixturevalue("s3_credentials"),
        request.getfixturevalue("fake_gcs"),
    )


@pytest.fixture
def setup_for(
    bucket: str, seaweedfs: Any, s3_client: Any, s3_credentials: dict[str, str], tmp_path: Path
) -> SetupFor:
    """``setup_for(legacy, extra="")``: a config for ``legacy`` and the test's bucket (``extra``
    is appended to the config's text), written to a file, and what goes with it."""

    def make(legacy: Legacy, extra: str = "") -> Setup:
        return make_setup(legacy, bucket, seaweedfs, s3_client, s3_credentials, tmp_path, extra)

    return make


@pytest.fixture
def setup(legacy: Legacy, setup_for: SetupFor) -> Setup:
    return setup_for(legacy)
