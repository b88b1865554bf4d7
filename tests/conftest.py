"""Shared test fixtures and helpers: the authors' reference outputs in ../shared (skipped cleanly when absent),
small nets and their bundle, a writable copy of it, and `run`, which calls a command's `main` in this process."""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Callable, Sequence
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


def run(main: Callable[[Sequence[str]], int], *arguments: object) -> tuple[int, str, str]:
    """A command's `main` run in this process on `arguments` (as strings): (exit code, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(argument) for argument in arguments])
    return code, stdout.getvalue(), stderr.getvalue()


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


@pytest.fixture
def bundle_copy(small_bundle, tmp_path) -> Path:
    """A copy of `small_bundle` this test may change."""
    return Path(shutil.copytree(small_bundle, tmp_path / "bundle"))


@pytest.fixture(scope="session")
def pairs(tmp_path_factory) -> Path:
    """Two 48x48 evaluation pairs (one image, two trajectories) made by `models.make_pairs`; read-only for tests
    (copy it to change it). Their crop side and names are `tests.runtime.conftest.CROP` and `NAMES`."""
    import cv2

    from models.make_pairs import make_pairs
    from tests.runtime.conftest import CROP, smooth_bgr8, write_trajectory_file

    sources = tmp_path_factory.mktemp("sources")
    cv2.imwrite(str(sources / "scene.png"), smooth_bgr8(64, 80, seed=7))
    trajectories = [
        write_trajectory_file(sources / "drift.txt", 40, 1),
        write_trajectory_file(sources / "wobble.txt", 25, 2),
    ]
    folder = tmp_path_factory.mktemp("pairs")
    make_pairs([sources / "scene.png"], trajectories, folder, crop=CROP, focal_length_scales=[2.0], log=lambda _: None)
    return folder


@pytest.fixture(scope="session")
def held_out_pair(tmp_path_factory) -> Path:
    """One real evaluation pair like the README's held-out ones (scikit-image's chelsea, not trained on, under a
    recorded shake from ../shared), 96 px: a folder for `runtime.tools.evaluate` and friends."""
    import cv2

    from models.make_pairs import make_pairs

    skimage_data = pytest.importorskip("skimage.data")
    trajectory_file = shared_file("data/trajectories/000000000025_0.txt")
    sources = tmp_path_factory.mktemp("held-out-source")
    image = sources / "chelsea.png"
    cv2.imwrite(str(image), cv2.cvtColor(skimage_data.chelsea(), cv2.COLOR_RGB2BGR))
    folder = tmp_path_factory.mktemp("held-out-pair")
    make_pairs([image], [trajectory_file], folder, crop=96, noise=0.01, focal_length_scales=[2.0], log=lambda _: None)
    return folder
