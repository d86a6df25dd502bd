from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = PROJECT_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The DCC's public test data beside the project (never copied into it)."""
    if not (SHARED / "SPEC.md").exists():
        pytest.skip(f"shared test data not found at {SHARED}")
    return SHARED
