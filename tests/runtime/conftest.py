"""Helpers for the runtime tests: smooth test pictures, short test videos and the recorded camera-shake trajectories
in ../shared."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.core import motion
from runtime.core.bundle import MANIFEST, write_manifest
from runtime.core.limits import IMAGE_PIXELS, Limit, LimitError
from runtime.io.lens import Lens, undistort_points
from tests.conftest import shared_file

#: A recorded trajectory with pitch, yaw and roll all present (up to ~1 degree each).
RECORDED = "data/trajectories/000000000009_0.txt"
#: The evaluation pairs of the `pairs` fixture: their crop side and names.
CROP = 48
NAMES = ["scene_drift", "scene_wobble"]


def read_trajectory(relative: str = RECORDED, poses: int = 25) -> np.ndarray:
    """A recorded trajectory in ../shared as `(poses, 3)` float32 radians (pitch, yaw, roll), read by
    `runtime.core.motion`: resampled to `poses` poses evenly in time and mean-centred."""
    return motion.read_trajectory(shared_file(relative), poses).astype(np.float32)


@pytest.fixture(scope="session")
def recorded_trajectory() -> np.ndarray:
    return read_trajectory()


def smooth_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An HxWx3 float32 RGB image in [0, 1], spatially correlated like a photograph (noise upsampled ~8x)."""
    coarse = np.random.default_rng(seed).random((height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), 0, 1)


def smooth_bgr8(height: int, width: int, seed: int = 0) -> np.ndarray:
    """The same as uint8 BGR, OpenCV's convention."""
    return np.round(smooth_rgb(height, width, seed)[..., ::-1] * 255).astype(np.uint8)


def write_video(path: Path, frames: int = 5, fps: float = 12.0, size: tuple[int, int] = (64, 48)) -> Path:
    """An mp4 of a smooth picture sliding 2 px a frame; `size` is (width, height)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    for number in range(frames):
        writer.write(np.roll(smooth_bgr8(size[1], size[0], seed=3), 2 * number, axis=1))
    writer.release()
    return path


def video_facts(path: Path) -> tuple[int, float, tuple[int, int]]:
    """(frames decoded, frame rate, (width, height))."""
    capture = cv2.VideoCapture(str(path))
    fps, size = capture.get(cv2.CAP_PROP_FPS), (int(capture.get(3)), int(capture.get(4)))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count, fps, size


def bundle_without_refine(bundle: Path, directory: Path) -> Path:
    """A copy of `bundle` in `directory` without its refine graph, as bundles exported before it are."""
    copy = Path(shutil.copytree(bundle, directory / "no-refine"))
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["graphs"]["refine"]
    (copy / "refine.onnx").unlink()
    write_manifest(copy, manifest)
    return copy


def write_trajectory_file(path: Path, rows: int, seed: int) -> Path:
    """A made-up camera shake in the authors' format: 6 comma-separated columns, the last 3 angles in radians."""
    angles = np.cumsum(0.004 * np.random.default_rng(seed).standard_normal((rows, 3)), axis=0)
    np.savetxt(path, np.hstack([np.zeros((rows, 3)), angles]), delimiter=",", fmt="%.9f")
    return path


def distort(image: np.ndarray, lens: Lens, focal_length_px: float) -> np.ndarray:
    """What `lens` sees of a pinhole image (focal length `focal_length_px`, principal point at the centre): each of
    its pixels sampled where the pinhole camera sees that point (bilinear, edges replicated)."""
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    pinhole = undistort_points(np.stack([xs.ravel(), ys.ravel()], axis=1), lens, height, width, focal_length_px)
    map_x, map_y = (pinhole[:, axis].reshape(height, width).astype(np.float32) for axis in (0, 1))
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def limit_refusal(limit: Limit, value: float, source: str) -> str:
    """The one line `limit` refuses `value` from `source` with (and, for the image size, why it is there)."""
    with pytest.raises(LimitError) as error:
        limit.check(value, source)
    return f"{error.value} ({limit.reason})" if limit is IMAGE_PIXELS else str(error.value)


def deblur_until_signalled(arguments: list[object], ready: Path, number: int, group: bool = False) -> tuple[int, str]:
    """Run `python -m runtime.deblur ARGUMENTS` in a subprocess, send it signal `number` once the folder `ready`
    exists (to its whole process group when `group`, as Ctrl-C in a terminal does), and return its exit code and
    stderr; the process is always ended."""
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime.deblur", *map(str, arguments)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.is_dir() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.poll() is None, "the run ended before the signal could be sent"
        if group:
            os.killpg(process.pid, number)
        else:
            process.send_signal(number)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stderr
