"""Shared test fixtures: the authors' reference outputs in ../shared, skipped cleanly when absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
OFFICIAL = SHARED / "fixtures" / "official"


def shared_file(relative: str) -> Path:
    """A file under ../shared, or a skip when the checkout has no ../shared beside it."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} not present (tests with the authors' reference outputs need ../shared)")
    return path


@pytest.fixture(scope="session")
def case_b() -> dict[str, np.ndarray]:
    """The authors' implementation run on case b (H=120, W=88): inputs and outputs, see its README."""
    with np.load(shared_file("fixtures/official/case_b.npz")) as data:
        return {key: data[key] for key in data.files}
