"""The Deblurrer runs the bundle's graphs and nothing else: the same bytes as onnxruntime, the reference's numbers."""

import cv2
import numpy as np
import onnx
import onnxruntime
import pytest

from runtime.core.backends import BackendSettings
from runtime.core.backends.base import BackendError
from runtime.core.backends.ort_warps import deform_warps
from runtime.core.bundle import load_bundle
from runtime.core.deblurrer import Deblurrer, RestoreSettings
from runtime.core.limits import LimitError
from runtime.core.motion import RowMotion
from runtime.core.pixels import quantize
from runtime.core.refine import RefineSettings
from runtime.core.tiling import middle_row_fraction, tiles
from tests.runtime.conftest import bundle_without_refine, smooth_bgr8, smooth_rgb

HEIGHT, WIDTH = 60, 84  # not multiples of 8: the prior pads
CPU = BackendSettings("ort-cpu")


def plain_session(bundle, role: str) -> onnxruntime.InferenceSession:
    """The graph in a session of its own, as the CPU provider loads it (warps as DeformConv: `ort_warps`)."""
    model, _ = deform_warps(onnx.load(bundle / f"{role}.onnx"), load_bundle(bundle).n_positions)
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def camera(height: int, width: int, focal: float | None = None) -> np.ndarray:
    """Default intrinsics written out by hand: f = longer side, principal point at the centre."""
    f = float(max(height, width)) if focal is None else focal
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float32)


def onnxruntime_reference(bundle, rgb: np.ndarray, focal: float | None = None, sigma: float = 0.01):
    """Trajectory `(1, P, 3)` and restored `(1, 3, H, W)` from plain sessions over the bundle's graphs."""
    height, width = rgb.shape[:2]
    batch = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
    intrinsics = camera(height, width, focal)
    (trajectory,) = plain_session(bundle, "trajectory").run(
        None, {"image": batch, "focal_length": intrinsics[:1, 0].copy()}
    )
    inputs = {"blurry": batch, "trajectory": trajectory, "intrinsics": intrinsics[None], "sigma": np.float32([sigma])}
    (restored,) = plain_session(bundle, "restoration").run(None, inputs)
    return trajectory, restored


@pytest.fixture(scope="module")
def deblurrer(small_bundle):
    with Deblurrer(small_bundle, CPU, log=lambda _: None) as deblurrer:
        yield deblurrer


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return smooth_bgr8(HEIGHT, WIDTH)


def test_a_frame_gives_exactly_what_onnxruntime_gives(deblurrer, small_bundle, frame):
    rgb = frame[..., ::-1].astype(np.float32) / np.float32(255)
    trajectory, restored = onnxruntime_reference(small_bundle, rgb)

    result = deblurrer(frame)
    expected = np.clip(np.floor(restored[0, ::-1].transpose(1, 2, 0) * np.float32(255) + np.float32(0.5)), 0, 255)
    assert result.restored.dtype == np.uint8 and result.restored.shape == frame.shape
    assert result.restored.flags.c_contiguous  # ready for OpenCV
    assert np.array_equal(result.restored, expected.astype(np.uint8))
    assert np.array_equal(result.trajectory, trajectory[0])
    assert np.array_equal(result.intrinsics, camera(HEIGHT, WIDTH))
    assert set(result.timings) == {"trajectory", "restoration"} and result.tiles == 1

    floating = deblurrer.restore(rgb)
    assert floating.restored.dtype == np.float32
    assert np.array_equal(floating.restored, restored[0].transpose(1, 2, 0))
    assert np.array_equal(floating.trajectory, trajectory[0])


def test_the_runtime_matches_the_pytorch_reference(deblurrer, small_nets, frame):
    import torch

    from export.graphs import RestorationGraph, TrajectoryGraph

    trajectory_net, restoration_net = small_nets
    rgb = frame[..., ::-1].astype(np.float32) / np.float32(255)
    result = deblurrer.restore(rgb)
    image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]))
    intrinsics = torch.from_numpy(camera(HEIGHT, WIDTH))[None]
    with torch.no_grad():
        trajectory = TrajectoryGraph(trajectory_net)(image, intrinsics[:, 0, 0])
        # The restoration is compared on the same trajectory, so each graph is judged on its own.
        restored = RestorationGraph(restoration_net)(
            image, torch.from_numpy(result.trajectory)[None], intrinsics, torch.tensor([0.01])
        )
    trajectory_error = np.abs(result.trajectory - trajectory[0].numpy()).max()
    restored_error = np.abs(result.restored - restored[0].numpy().transpose(1, 2, 0)).max()
    print(f"vs PyTorch: trajectory {trajectory_error:.2e} rad, restored {restored_error:.2e}")
    assert trajectory_error <= 1e-5  # the export's parity tolerances
    assert restored_error <= 1e-4


def test_frames_of_other_sizes_follow_each_other(deblurrer, frame):
    first = deblurrer(frame)
    portrait = deblurrer(smooth_bgr8(96, 64, seed=1))
    again = deblurrer(frame)
    assert portrait.restored.shape == (96, 64, 3)
    assert np.array_equal(portrait.intrinsics[:2, 2], [32, 48])
    # The input buffer is reused and regrown; results are the caller's own and stay as they were.
    assert np.array_equal(again.restored, first.restored) and np.array_equal(again.trajectory, first.trajectory)
    assert again.restored is not first.restored


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((31, 64, 3), np.uint8), "image is 64x31; the bundle needs at least 32 px on each side"),
        (np.zeros((48, 64, 3), np.float32), "expected an HxWx3 uint8 BGR frame, got float32"),
        (np.zeros((48, 64, 3), np.uint16), "expected an HxWx3 uint8 BGR frame, got uint16"),
        (np.zeros((48, 64), np.uint8), r"got uint8 array of shape \(48, 64\)"),
        (np.zeros((48, 64, 4), np.uint8), r"got uint8 array of shape \(48, 64, 4\)"),
        ([[0, 1], [2, 3]], "got list"),
    ],
)
def test_frames_the_nets_cannot_take_are_refused(deblurrer, bad, message):
    with pytest.raises(ValueError, match=message):
        deblurrer(bad)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda d: d.restore(np.zeros((48, 64, 3), np.uint8)), "expected an HxWx3 float32 RGB image in"),
        (lambda d: d.restore(np.zeros((48, 64, 3), np.float64)), "got float64"),
        (lambda d: d.restore(np.zeros((48, 20, 3), np.float32)), "image is 20x48"),
        (lambda d: d.restore(np.zeros((48, 64, 3), np.float32), focal_length=0.0), "focal length must be a positive"),
        (lambda d: d.restore(np.zeros((48, 64, 3), np.float32), trajectory=np.zeros((24, 3))), "must be 25x3"),
        (lambda d: d.sequence(np.zeros((48, 64, 3), np.uint8), np.zeros((25, 3)), np.eye(3)), "float32"),
        (lambda d: d.estimate_trajectory(np.zeros((48, 64, 3), np.uint8)), "expected an HxWx3 float32 RGB image"),
        (lambda d: d.estimate_trajectory(np.zeros((48, 64, 3), np.float32), -1.0), "focal length must be a positive"),
    ],
)
def test_images_and_trajectories_the_nets_cannot_take_are_refused(deblurrer, call, message):
    with pytest.raises(ValueError, match=message):
        call(deblurrer)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"focal_length": -3.0}, "focal length must be a positive number of pixels, got -3.0"),
        ({"focal_length": float("nan")}, "focal length must be"),
        ({"sigma": -0.1}, "sigma .* must be a finite number >= 0"),
        ({"tile_side": 100}, "tile side must be at least 256 px"),
        ({"estimation_side": 16}, "estimation side must be at least 32 px, the bundle's smallest input"),
    ],
)
def test_bad_settings_are_refused(small_bundle, settings, message):
    with pytest.raises(ValueError, match=message):
        Deblurrer(small_bundle, CPU, RestoreSettings(**settings), log=lambda _: None)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"focal_length": 1e30}, "RestoreSettings.focal_length: focal length 1e+30 px is outside 1..1000000 px"),
        ({"focal_length": 0.5}, "RestoreSettings.focal_length: focal length 0.5 px is outside 1..1000000 px"),
        ({"sigma": 1e10}, "RestoreSettings.sigma: sigma (the noise level) 10000000000 is outside 0..0.5"),
        ({"sigma": np.float32(0.75)}, "RestoreSettings.sigma: sigma (the noise level) 0.75 is outside 0..0.5"),
    ],
)
def test_settings_beyond_any_camera_are_refused_naming_the_setting_and_the_limit(settings, message):
    with pytest.raises(LimitError) as caught:
        RestoreSettings(**settings)
    assert str(caught.value) == message


BOUND = "rotation {} rad is outside -0.785398..0.785398 rad"


def _shake(pose: int, axis: int, value: float) -> np.ndarray:
    trajectory = np.zeros((25, 3))
    trajectory[pose, axis] = value
    return trajectory


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda d: d.restore(smooth_rgb(48, 64), focal_length=1e30),
            "the focal_length given for this image: focal length 1e+30 px is outside 1..1000000 px",
        ),
        (
            lambda d: d.estimate_trajectory(smooth_rgb(48, 64), 1e7),
            "the focal_length given for this image: focal length 10000000 px is outside 1..1000000 px",
        ),
        (
            lambda d: d.restore(smooth_rgb(48, 64), trajectory=_shake(3, 1, 100.0)),
            "the trajectory given, pose 3 yaw: " + BOUND.format(100),
        ),
        (
            lambda d: d(smooth_bgr8(48, 64), trajectory=_shake(0, 2, -1e30)),
            "the trajectory given, pose 0 roll: " + BOUND.format("-1e+30"),
        ),
        (
            lambda d: d.restore(smooth_rgb(48, 64), trajectory=RowMotion(lambda f: _shake(24, 0, 0.1 + 2 * f), 2)),
            "the trajectory given, pose 24 pitch: " + BOUND.format(1.1),
        ),
        (
            lambda d: d.reblur(smooth_rgb(48, 64), _shake(5, 0, 1e30), camera(48, 64)),
            "the trajectory given, pose 5 pitch: " + BOUND.format("1e+30"),
        ),
    ],
)
def test_focal_lengths_and_trajectories_beyond_any_camera_are_refused(deblurrer, call, message):
    """Not "finite radians" for 1e30 rad, nor a NaN further on: the value, the limit and where it came from."""
    with pytest.raises(LimitError) as caught:
        call(deblurrer)
    assert str(caught.value) == message


def test_the_nets_clamped_estimate_is_taken_back(deblurrer):
    """The trajectory net clamps its poses to pi/4 in float32; such a trajectory restores, and refines."""
    clamped = np.full((25, 3), np.float32(np.pi / 4))
    result = deblurrer.restore(smooth_rgb(48, 64), trajectory=clamped)
    assert np.array_equal(result.trajectory, clamped) and np.isfinite(result.restored).all()


def test_the_focal_length_is_honoured(small_bundle, deblurrer, frame):
    rgb = frame[..., ::-1].astype(np.float32) / np.float32(255)
    with Deblurrer(small_bundle, CPU, RestoreSettings(focal_length=500.0), log=lambda _: None) as long_lens:
        result = long_lens.restore(rgb)
    assert np.array_equal(result.intrinsics, camera(HEIGHT, WIDTH, 500.0))
    trajectory, restored = onnxruntime_reference(small_bundle, rgb, focal=500.0)
    assert np.array_equal(result.trajectory, trajectory[0])
    assert np.array_equal(result.restored, restored[0].transpose(1, 2, 0))
    assert not np.array_equal(result.trajectory, deblurrer.restore(rgb).trajectory)
    # Per image, the argument wins over the Deblurrer's setting.
    assert deblurrer.restore(rgb, focal_length=700.0).intrinsics[0, 0] == 700.0


def test_the_trajectory_alone_is_the_one_a_restoration_reports(small_bundle, frame):
    rgb = frame[..., ::-1].astype(np.float32) / np.float32(255)
    with Deblurrer(small_bundle, CPU, RestoreSettings(focal_length=500.0), log=lambda _: None) as deblurrer:
        result = deblurrer.restore(rgb)
        trajectory, intrinsics = deblurrer.estimate_trajectory(rgb)
        assert np.array_equal(trajectory, result.trajectory) and np.array_equal(intrinsics, result.intrinsics)
        assert trajectory.shape == (25, 3)
        other, other_intrinsics = deblurrer.estimate_trajectory(rgb, focal_length=700.0)
    assert other_intrinsics[0, 0] == 700.0 and not np.array_equal(other, trajectory)


@pytest.mark.parametrize(
    "height, width, seen",
    [
        (120, 200, (64, 38)),  # the longer side shrunk to 64 px, the focal length with it
        (40, 400, (320, 32)),  # no less than the bundle's 32 px on the shorter side
        (48, 64, (64, 48)),  # no larger than 64 px: as it is
    ],
)
def test_the_trajectory_net_can_run_on_a_shrunk_copy(small_bundle, height, width, seen):
    rgb = smooth_rgb(height, width)
    with Deblurrer(small_bundle, CPU, RestoreSettings(estimation_side=64), log=pytest.fail) as shrinking:
        trajectory, intrinsics = shrinking.estimate_trajectory(rgb, focal_length=300.0)
        result = shrinking.restore(rgb, focal_length=300.0)
    shrunk = cv2.resize(rgb, seen, interpolation=cv2.INTER_AREA) if seen != (width, height) else rgb
    (expected,) = plain_session(small_bundle, "trajectory").run(
        None,
        {
            "image": np.ascontiguousarray(shrunk.transpose(2, 0, 1)[None]),
            "focal_length": np.float32([300.0 * seen[0] / width]),
        },
    )
    assert np.array_equal(trajectory, expected[0]) and np.array_equal(result.trajectory, expected[0])
    # The restoration and the intrinsics stay at full resolution.
    assert intrinsics[0, 0] == 300.0 and result.restored.shape == (height, width, 3)


def test_a_known_trajectory_skips_the_trajectory_net(deblurrer, small_bundle, frame, recorded_trajectory):
    rgb = frame[..., ::-1].astype(np.float32) / np.float32(255)
    result = deblurrer.restore(rgb, trajectory=recorded_trajectory)
    assert "trajectory" not in result.timings and np.array_equal(result.trajectory, recorded_trajectory)
    inputs = {
        "blurry": np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]),
        "trajectory": recorded_trajectory[None],
        "intrinsics": camera(HEIGHT, WIDTH)[None],
        "sigma": np.float32([0.01]),
    }
    (restored,) = plain_session(small_bundle, "restoration").run(None, inputs)
    assert np.array_equal(result.restored, restored[0].transpose(1, 2, 0))
    # A capture app's BGR frame takes one too: the same restoration, as 8-bit BGR.
    framed = deblurrer(frame, trajectory=recorded_trajectory)
    assert "trajectory" not in framed.timings and np.array_equal(framed.trajectory, recorded_trajectory)
    expected = np.clip(restored[0, ::-1].transpose(1, 2, 0) * 255 + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(framed.restored, expected)


def test_the_sequence_frames_average_to_the_reblurred_image(deblurrer, frame, recorded_trajectory):
    sharp = frame[..., ::-1].astype(np.float32) / np.float32(255)
    frames, reblurred = deblurrer.sequence(sharp, recorded_trajectory * 5, camera(HEIGHT, WIDTH))
    assert frames.shape == (25, HEIGHT, WIDTH, 3) and reblurred.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(frames.mean(axis=0) - reblurred).max() < 1e-6
    assert np.abs(reblurred - sharp).max() > 0.01  # a real blur


# --- motion that changes from row to row (rolling shutter) -----------------------------------------------------


def test_one_motion_for_every_row_restores_and_reblurs_as_the_plain_trajectory(small_bundle, recorded_trajectory):
    """Bands are tiles: the same trajectory in every band gives the whole image's results (tiling's bounds)."""
    height, width = 200, 96
    sharp = smooth_rgb(height, width, seed=5)
    motion = RowMotion(lambda _: recorded_trajectory, bands=4)
    with Deblurrer(small_bundle, CPU, log=lambda _: None) as deblurrer:
        cam = camera(height, width)
        blurry = deblurrer.reblur(sharp, recorded_trajectory * 3, cam)
        assert (
            np.abs(deblurrer.reblur(sharp, motion, cam) - deblurrer.reblur(sharp, recorded_trajectory, cam)).max()
            < 1e-5
        )
        said = []
        banded = deblurrer.restore(blurry, trajectory=motion, progress=said.append)
        plain = deblurrer.restore(blurry, trajectory=recorded_trajectory)
    assert banded.tiles == 4 and said == [f"restoring: tile {k}/4" for k in range(1, 5)]
    assert banded.row_motion is motion and plain.row_motion is None
    assert np.array_equal(banded.trajectory, recorded_trajectory)
    assert np.abs(banded.restored - plain.restored).max() < 1e-3


def test_each_band_is_blurred_and_restored_with_its_rows_motion(small_bundle, recorded_trajectory):
    """A motion that grows down the image: each band's core is what its middle row's trajectory makes of it."""
    height, width = 200, 96
    sharp = smooth_rgb(height, width, seed=6)
    motion = RowMotion(lambda fraction: recorded_trajectory * (1 + 4 * fraction), bands=4)
    parts = tiles(height, width, max(height, width), 64, motion.bands)
    with Deblurrer(small_bundle, CPU, log=lambda _: None) as deblurrer:
        cam = camera(height, width)
        reblurred = deblurrer.reblur(sharp, motion, cam)
        restored = deblurrer.restore(reblurred, trajectory=motion).restored
        for part in parts:
            own = motion.trajectory_at(middle_row_fraction(part, height))
            rows = slice(part.core_y0, part.core_y1)
            assert np.abs(reblurred[rows] - deblurrer.reblur(sharp, own, cam)[rows]).max() < 1e-5
            alone = deblurrer.restore(reblurred, trajectory=own).restored
            assert np.abs(restored[rows] - alone[rows]).max() < 1e-3
        assert (
            deblurrer.restore(reblurred, trajectory=motion).trajectory.tolist()
            == motion.trajectory_at(0.5).astype(np.float32).tolist()
        )
        frames, _ = deblurrer.sequence(sharp, motion, cam)
        eight_bit, _ = deblurrer.sequence(sharp, motion, cam, eight_bit=True)
        assert eight_bit.dtype == np.uint8 and np.array_equal(eight_bit, quantize(frames))


def test_a_rolling_shutter_result_is_not_refined(small_bundle, recorded_trajectory):
    image = smooth_rgb(HEIGHT, WIDTH)
    with Deblurrer(small_bundle, CPU, log=lambda _: None, refine=RefineSettings(steps=2)) as refining:
        result = refining.restore(image, trajectory=RowMotion(lambda _: recorded_trajectory, 2))
        assert result.refinement is None
        with pytest.raises(ValueError, match="one trajectory per row"):
            refining.refine_result(image, result)


def test_a_closed_deblurrer_says_so(small_bundle, frame):
    deblurrer = Deblurrer(small_bundle, CPU, log=lambda _: None)
    deblurrer.close()
    with pytest.raises(BackendError, match="used after close"):
        deblurrer(frame)


# --- refinement --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shaken(deblurrer, recorded_trajectory):
    """A smooth picture blurred by the recorded shake (x3) through the bundle, and a start 30% off that shake."""
    truth = recorded_trajectory * 3
    _, blurry = deblurrer.sequence(smooth_rgb(HEIGHT, WIDTH, seed=4), truth, camera(HEIGHT, WIDTH))
    return np.ascontiguousarray(blurry), (0.7 * truth).astype(np.float32)


def test_refinement_refines_the_trajectory_and_says_how_much(small_bundle, deblurrer, shaken):
    blurry, start = shaken
    with Deblurrer(small_bundle, CPU, log=lambda _: None, refine=RefineSettings(steps=8)) as refining:
        result = refining.restore(blurry, trajectory=start)
    refinement = result.refinement
    assert refinement is not None and refinement.steps_run == 8 and refinement.stopped == "steps"
    assert refinement.loss_after < refinement.loss_before
    assert np.array_equal(result.trajectory, refinement.trajectory)
    assert {"restoration", "refine"} <= set(result.timings) and "restoration_rerun" not in result.timings
    # Without the re-run the image is the one restored with the start trajectory.
    assert np.array_equal(result.restored, deblurrer.restore(blurry, trajectory=start).restored)
    assert deblurrer.restore(blurry, trajectory=start).refinement is None


def test_the_rerun_restores_with_the_refined_trajectory(small_bundle, deblurrer, shaken):
    blurry, start = shaken
    settings = RefineSettings(steps=(4, 4), scales=(0.5, 1.0), rerun=True)
    with Deblurrer(small_bundle, CPU, log=lambda _: None, refine=settings) as refining:
        result = refining.restore(blurry, trajectory=start)
        frame_result = refining(smooth_bgr8(HEIGHT, WIDTH))  # frames are refined too
    assert result.refinement is not None and "restoration_rerun" in result.timings
    assert not np.array_equal(result.trajectory, start)
    assert np.array_equal(result.restored, deblurrer.restore(blurry, trajectory=result.trajectory).restored)
    assert frame_result.refinement is not None and frame_result.restored.dtype == np.uint8


def test_a_result_restored_without_refinement_can_be_refined_afterwards(small_bundle, shaken):
    """restore(refine=False) then refine_result gives what one refining restore gives, with one restoration."""
    blurry, start = shaken
    settings = RefineSettings(steps=(4, 4), scales=(0.5, 1.0), rerun=True)
    with Deblurrer(small_bundle, CPU, log=lambda _: None, refine=settings) as refining:
        plain = refining.restore(blurry, trajectory=start, refine=False)
        refined = refining.refine_result(blurry, plain)
        at_once = refining.restore(blurry, trajectory=start)
        with pytest.raises(ValueError, match="already refined"):
            refining.refine_result(blurry, refined)
        with pytest.raises(ValueError, match="refine a result with the image it was restored from"):
            refining.refine_result(np.ascontiguousarray(blurry[:-8]), plain)
    assert plain.refinement is None and set(plain.timings) == {"restoration"}
    assert refined.refinement is not None and refined.refinement.loss_before == at_once.refinement.loss_before
    assert np.array_equal(refined.trajectory, at_once.trajectory)
    assert np.array_equal(refined.restored, at_once.restored)
    assert set(refined.timings) == {"restoration", "refine", "restoration_rerun"}


def test_only_a_refining_deblurrer_refines_results(deblurrer, shaken):
    blurry, start = shaken
    with pytest.raises(ValueError, match="this Deblurrer does not refine"):
        deblurrer.refine_result(blurry, deblurrer.restore(blurry, trajectory=start))


def test_refinement_needs_the_refine_graph(small_bundle, tmp_path):
    bundle = bundle_without_refine(small_bundle, tmp_path)
    with pytest.raises(ValueError, match="has no refine graph; add it with python -m export.refine"):
        Deblurrer(bundle, CPU, log=lambda _: None, refine=RefineSettings())
    with Deblurrer(bundle, CPU, log=lambda _: None) as plain:  # without refinement it runs
        assert plain.restore(smooth_rgb(HEIGHT, WIDTH)).refinement is None


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"scales": (1.0, 0.5)}, "scales must be increasing"),
        ({"steps": -1}, "steps must be an integer >= 0"),
        ({"steps": (3, 3)}, "one per scale"),
        ({"step_size": 0.0}, "step size must be a positive number"),
        ({"smoothness": float("nan")}, "smoothness must be a finite number"),
    ],
)
def test_bad_refine_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        RefineSettings(**settings)
