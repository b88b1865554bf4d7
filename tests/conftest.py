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


@pytest.fixture(scope="session")
def small_nets():
    """Reduced-width random-weight nets with the authors' architecture (seeded)."""
    import torch

    from models.restoration import RestorationNet
    from models.trajectory import TrajectoryNet

    torch.manual_seed(0)
    return TrajectoryNet(n_positions=25, nc1=4).eval(), RestorationNet(n_iter=2, h_nc=8, nc=(4, 8, 8, 16), nb=1).eval()


@pytest.fixture(scope="session")
def small_bundle(small_nets, tmp_path_factory) -> Path:
    """A bundle exported from `small_nets` at the default opset; read-only for tests (copy it to change it)."""
    from export.onnx import export_bundle

    return export_bundle(*small_nets, tmp_path_factory.mktemp("bundles") / "small", log=lambda *_: None)
