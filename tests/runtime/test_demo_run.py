"""The main command of the README: the shipped demo bundle deblurs the shipped camera-shake photo, without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.core.backends import BackendSettings
from runtime.core.camera import intrinsics
from runtime.core.deblurrer import Deblurrer
from runtime.core.motion import read_trajectory
from runtime.io.deblur import DEMO_BUNDLE, main
from runtime.io.lens import Lens, undistort
from runtime.tools.metrics import psnr
from tests.conftest import shared_file
from tests.runtime.conftest import RECORDED, distort

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "clock_motion.png"

pytestmark = pytest.mark.skipif(not DEMO_BUNDLE.is_dir(), reason="no demo bundle shipped in runtime/bundles/demo")


def test_the_main_command_runs_the_demo_bundle_on_the_example_without_torch(tmp_path):
    """End to end where torch cannot be imported (every layer's imports are checked by `tests/test_layers.py`)."""
    code = "import sys; sys.modules['torch'] = None; import runtime.io.deblur as d; sys.exit(d.main(sys.argv[1:]))"
    run = subprocess.run(
        [sys.executable, "-c", code, str(EXAMPLE), "-o", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    results = tmp_path / "clock_motion"
    restored = cv2.imread(str(results / "restored.png"), cv2.IMREAD_UNCHANGED)
    assert restored.shape == cv2.imread(str(EXAMPLE), cv2.IMREAD_UNCHANGED).shape  # gray in, gray out
    description = json.loads((results / "trajectory.json").read_text())
    assert len(description["poses"]) == 25 and description["image_size"] == {"width": 400, "height": 300}
    for name in ("reblurred.png", "kernels.png", "trajectory.png", "trajectory.csv"):
        assert (results / name).is_file(), name


def test_a_wheel_ships_the_demo_bundle_where_the_main_command_looks_for_it(tmp_path):
    """A plain `pip install` (not editable) must find the demo bundle too: the wheel holds it beside `runtime`."""
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    done = subprocess.run([*build, str(ROOT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("blur2seq_edge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"runtime/bundles/demo/{path.name}" for path in DEMO_BUNDLE.iterdir() if path.suffix in (".onnx", ".json")
    }
    graphs = json.loads((DEMO_BUNDLE / "manifest.json").read_text())["graphs"]
    assert {f"runtime/bundles/demo/{role}.onnx" for role in graphs} <= shipped
    assert shipped <= names and "runtime/io/deblur.py" in names
    # runtime.io.deblur looks for the bundle at ../bundles/demo from its own folder, in the wheel's layout too.
    assert DEMO_BUNDLE == Path(sys.modules["runtime.io.deblur"].__file__).resolve().parents[1] / "bundles" / "demo"


def test_a_known_trajectory_lets_the_demo_bundle_deblur(tmp_path):
    """Non-blind deblurring, as with a gyroscope: a held-out photo (scikit-image's `chelsea`, never trained on)
    blurred by a recorded shake through the bundle's own blur graph, 1% noise, 8 bits; restored by the CLI given the
    recorded trajectory file. Measured: +2.98 dB over the blurry image, against +1.46 dB estimating the trajectory."""
    skimage_data = pytest.importorskip("skimage.data")
    recorded = shared_file(RECORDED)
    sharp = skimage_data.chelsea()[:256, 100:356].astype(np.float32) / 255
    with Deblurrer(DEMO_BUNDLE, BackendSettings("ort-cpu"), log=lambda _: None) as deblurrer:
        blurry = deblurrer.reblur(sharp, read_trajectory(recorded), intrinsics(256, 256, 512.0))
    noise = np.random.default_rng(0).normal(0, 0.01, blurry.shape)
    blurry8 = np.round(np.clip(blurry + noise, 0, 1) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "blurry.png"), blurry8[..., ::-1])

    def gain(*arguments: object) -> float:
        outdir = tmp_path / f"out{len(arguments)}"
        assert (
            main([str(tmp_path / "blurry.png"), "-o", str(outdir), "--focal-length", "512", *map(str, arguments)]) == 0
        )
        restored = cv2.imread(str(outdir / "blurry" / "restored.png"))[..., ::-1]
        return psnr(restored / 255, sharp) - psnr(blurry8 / 255, sharp)

    given, estimated = gain("--trajectory", recorded), gain()
    assert given > 2.5
    assert given > estimated + 1.0


def test_a_lens_preset_undoes_the_distortion_before_deblurring(tmp_path):
    """`chelsea` blurred by a recorded shake (2.5x) through the pinhole blur model at f = 200 px, then seen through a
    barrel-distorting lens (k1 -0.3, k2 0.08; up to 48 px at the corners), 1% noise, 8 bits; deblurred by the CLI
    with the trajectory known. With the lens in the camera preset the image is undistorted first and restored in
    the pinhole view the blur was made in; without it, restored as it is. Each is judged in its own geometry
    (against the sharp image, or the sharp image distorted), over all but an 8 px border. Measured: +2.83 dB with
    the lens, +2.15 dB without."""
    skimage_data = pytest.importorskip("skimage.data")
    size, focal = 256, 200.0
    sharp = skimage_data.chelsea()[:size, 100 : 100 + size].astype(np.float32) / 255
    shake = 2.5 * read_trajectory(shared_file(RECORDED))
    lens = Lens("standard", (-0.3, 0.08, 0.0, 0.0), (focal, focal), (size / 2, size / 2), size, size)
    with Deblurrer(DEMO_BUNDLE, BackendSettings("ort-cpu"), log=lambda _: None) as deblurrer:
        blurry = deblurrer.reblur(sharp, shake, intrinsics(size, size, focal))
    noise = np.random.default_rng(0).normal(0, 0.01, blurry.shape).astype(np.float32)
    seen = np.round(np.clip(distort(blurry, lens, focal) + noise, 0, 1) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "seen.png"), seen[..., ::-1])
    np.savetxt(tmp_path / "shake.csv", shake, delimiter=",")
    camera = f"focal_length_px: {focal}\nwidth_px: {size}\nheight_px: {size}\n"
    (tmp_path / "plain.yaml").write_text(camera)
    (tmp_path / "lens.yaml").write_text(camera + "lens:\n  model: standard\n  distortion: [-0.3, 0.08, 0, 0]\n")
    inner = (slice(8, size - 8), slice(8, size - 8))

    def gain(preset: str, truth: np.ndarray, blurry_there: np.ndarray) -> float:
        outdir = tmp_path / preset.replace(".yaml", "")
        arguments = [str(tmp_path / "seen.png"), "-o", str(outdir), "--camera", str(tmp_path / preset)]
        assert main([*arguments, "--trajectory", str(tmp_path / "shake.csv")]) == 0
        restored = cv2.imread(str(outdir / "seen" / "restored.png"))[..., ::-1] / 255
        return psnr(restored[inner], truth[inner]) - psnr(blurry_there[inner], truth[inner])

    seen_float = seen.astype(np.float32) / 255
    with_lens = gain("lens.yaml", sharp, undistort(seen_float, lens, focal))
    without = gain("plain.yaml", distort(sharp, lens, focal), seen_float)
    description = json.loads((tmp_path / "lens" / "seen" / "trajectory.json").read_text())
    assert description["undistorted"] == "standard"
    assert with_lens > 2.5 and with_lens > without + 0.4, (with_lens, without)


def test_the_demo_bundle_on_a_real_camera_shake_photo(tmp_path):
    """`../shared`'s real camera-shake photo (Lai et al. 2016; no ground truth), at 512 px: the restored image is
    sharper than the photo, and blurred again by the estimated trajectory it comes back close to the photo: the
    estimate and the restoration explain the blur together. Measured: Laplacian variance x1.54; mean squared
    difference from the photo 4.2e-4 restored, 1.6e-4 reblurred."""
    photo = shared_file("data/real_blurry/manmade_01_gyro_01.png")
    assert main([str(photo), "-o", str(tmp_path), "--max-side", "512"]) == 0
    results = tmp_path / photo.stem
    blurry = cv2.resize(cv2.imread(str(photo)), (512, 340), interpolation=cv2.INTER_AREA) / 255
    restored, reblurred = (cv2.imread(str(results / name)) / 255 for name in ("restored.png", "reblurred.png"))

    def sharpness(image: np.ndarray) -> float:
        gray = cv2.cvtColor(np.round(image * 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)
        return float(cv2.Laplacian(gray.astype(np.float64), cv2.CV_64F).var())

    assert sharpness(restored) > 1.3 * sharpness(blurry)
    assert np.mean((reblurred - blurry) ** 2) < 0.5 * np.mean((restored - blurry) ** 2)
