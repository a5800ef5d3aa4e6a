"""Shared fixtures; slow tests run only with LMFORGE_SLOW=1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    if os.environ.get("LMFORGE_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set LMFORGE_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED
