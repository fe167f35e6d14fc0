"""Shared fixtures: paths to the repository and to the real reference data in ../shared/fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# cctbx bundles its own libstdc++: it must be loaded before torch or scipy.special in a process
# (HPC-NOTES.md), and tests run the index command in-process after others imported torch.
from braggflow.indexing.dps import import_cctbx

import_cctbx()

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """The real CrystFEL/CSPAD reference files; tests using them skip when they are absent."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(
            f"real reference fixtures not found at {SHARED_FIXTURES} (they ship beside the repo in CI)"
        )
    return SHARED_FIXTURES
