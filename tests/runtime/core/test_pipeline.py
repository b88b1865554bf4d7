"""The pipeline's steps on their own: no Deblurrer, and where the rule is the point, no nets (stand-in graphs)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from runtime.core import pipeline
from runtime.core.bundle import Bundle
from runtime.core.camera import intrinsics
from runtime.core.limits import LimitError
from runtime.core.motion import RowMotion
from runtime.core.pipeline import DeblurResult, RestoreSettings
from runtime.core.tiling import middle_row_fraction, tile_margin, tiles
from tests.runtime.conftest import smooth_bgr8, smooth_rgb

#: A bundle as the steps read it: 25 poses, a noise level, two ADMM iterations (as the tests' small bundle).
BUNDLE = Bundle(
    Path("stand-in"),
    {"n_positions": 25, "default_sigma": 0.02, "architecture": {"restoration": {"n_iter": 2}}, "graphs": {}},
)


class StandIn:
    """A `Runner` whose outputs are `outputs(inputs)`, recording the inputs of every run."""

    backend = "stand-in"
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()

    def __init__(self, outputs):
        self.outputs = outputs
        self.runs: list[dict[str, np.ndarray]] = []

    def set_shapes(self, shapes) -> None:
        pass

    def run(self, inputs):
        self.runs.append(dict(inputs))
        return self.outputs(inputs)

    def close(self) -> None:
        pass


def the_trajectory(value: float):
    """A stand-in trajectory net that estimates every pose as `value` radians."""
    return StandIn(lambda _: {"trajectory": np.full((1, 25, 3), value, np.float32)})


def scaling_restoration():
    """A stand-in restoration that multiplies the blurry image by the noise level it is given."""
    return StandIn(lambda inputs: {"restored": inputs["blurry"] * inputs["sigma"][0]})


@pytest.mark.parametrize(
    "height, width, side, seen",
    [
        (120, 200, 64, (64, 38)),  # the longer side shrunk to 64 px
        (40, 400, 64, (320, 32)),  # no less than the bundle's 32 px on the shorter side
        (48, 64, 64, (64, 48)),  # no larger than 64 px: as it is
        (30, 40, 64, (40, 30)),  # never enlarged
        (1200, 1600, None, (1600, 1200)),  # None: full resolution
    ],
)
def test_the_trajectory_net_sees_at_most_the_estimation_side(height, width, side, seen):
    assert pipeline.estimation_size(height, width, side, 32) == seen


def test_the_estimate_runs_on_the_shrunk_copy_with_the_focal_length_scaled():
    net = the_trajectory(0.01)
    batch = pipeline.rgb_batch(smooth_rgb(120, 200), 32)
    poses = pipeline.estimate(net, batch, intrinsics(120, 200, 300.0), 64, 32)
    (seen,) = net.runs
    assert seen["image"].shape == (1, 3, 38, 64) and seen["focal_length"].tolist() == [np.float32(300.0 * 64 / 200)]
    assert poses.shape == (1, 25, 3)
    pipeline.estimate(net, batch, intrinsics(120, 200, 300.0), None, 32)
    assert net.runs[1]["image"] is batch and net.runs[1]["focal_length"].tolist() == [300.0]


def test_a_margin_the_tiles_cannot_hold_is_capped_and_said_once(recorded_trajectory, monkeypatch):
    calls = []

    def restore_tiled(restore, blurry, trajectory, camera, tile, margin, progress, bands=1):
        calls.append((tile, margin))
        return blurry.copy(), 4

    monkeypatch.setattr(pipeline, "restore_tiled", restore_tiled)
    said = []
    warn = pipeline.say_once(said.append)
    batch = pipeline.rgb_batch(smooth_rgb(264, 288), 32)
    poses = pipeline.checked_poses(recorded_trajectory, 25)
    camera = pipeline.image_camera(batch, 5000.0, RestoreSettings(tile_side=256))
    for _ in range(2):  # an 85 px blur: margins of 256 px
        pipeline.restore_image(pytest.fail, batch, poses, camera, tile_side=256, n_iter=2, warn=warn)
    assert calls == [(256, 64), (256, 64)]
    assert len(said) == 1 and "blur of 85 px needs tile margins of 256 px but tiles of 256 px allow 64" in said[0]


def test_the_margin_is_the_tiling_rule_until_the_tiles_cannot_hold_it():
    said = []
    assert pipeline.capped_margin(30.0, 1024, 8, said.append) == tile_margin(30.0, 8) == 184 and said == []
    assert pipeline.capped_margin(85.0, 256, 2, said.append) == 64
    assert pipeline.capped_margin(85.0, 256, 2, said.append) == 64
    # Without `say_once` every capped margin is told.
    assert (
        said
        == [
            "warning: a blur of 85 px needs tile margins of 256 px but tiles of 256 px allow 64: seams may show; "
            "raise the tile side to 1024"
        ]
        * 2
    )


def test_an_image_no_larger_than_a_tile_is_restored_whole_and_a_larger_one_in_told_tiles():
    batch = pipeline.rgb_batch(smooth_rgb(240, 256), 32)
    poses, camera = np.zeros((1, 25, 3), np.float32), intrinsics(240, 256)
    restored, count = pipeline.restore_image(
        lambda blurry, *_: blurry * 2, batch, poses, camera, tile_side=256, n_iter=2, warn=pytest.fail
    )
    assert count == 1 and np.array_equal(restored, batch * 2)
    wide = pipeline.rgb_batch(smooth_rgb(240, 600), 32)
    said = []
    restored, count = pipeline.restore_image(
        lambda blurry, *_: blurry * 2,
        wide,
        poses,
        intrinsics(240, 600),
        tile_side=256,
        n_iter=2,
        warn=pytest.fail,
        progress=said.append,
        stage="restoring again",
    )
    total = len(tiles(240, 600, 256, 64))
    assert count == total > 1 and said == [f"restoring again: tile {k}/{total}" for k in range(1, total + 1)]
    assert np.array_equal(restored, wide * 2)


def slight_shake(fraction: float) -> np.ndarray:
    """A trajectory that grows down the image, small enough (< 1 px) for the smallest margins."""
    return np.full((25, 3), 0.001 * fraction)


def test_a_rolling_shutter_is_restored_in_bands_each_with_its_middle_rows_trajectory():
    """5 bands of a 300-row image that needs no tiles otherwise, each told, each with its own trajectory."""
    height, width = 300, 100
    motion = RowMotion(slight_shake, bands=5)
    batch = np.zeros((1, 3, height, width), np.float32)
    said = []
    restored, count = pipeline.restore_rows(
        lambda blurry, trajectory, _: np.full_like(blurry, trajectory[0, 0, 0]),
        batch,
        motion,
        intrinsics(height, width),
        n_positions=25,
        tile_side=None,
        n_iter=2,
        warn=pytest.fail,
        progress=said.append,
    )
    assert count == 5 and said == [f"restoring: tile {k}/5" for k in range(1, 6)]
    for part in tiles(height, width, height, 64, 5):
        expected = np.float32(slight_shake(middle_row_fraction(part, height))[0, 0])
        assert np.all(restored[..., part.core_y0 : part.core_y1, :] == expected)
    with pytest.raises(LimitError, match="the trajectory given, pose 0 pitch"):
        pipeline.restore_rows(
            lambda blurry, *_: blurry,
            batch,
            RowMotion(lambda fraction: np.full((25, 3), 0.5 + fraction), bands=2),
            intrinsics(height, width),
            n_positions=25,
            tile_side=None,
            n_iter=2,
            warn=lambda _: None,
        )


def test_a_rolling_shutter_is_warped_in_bands_with_their_own_trajectories_and_intrinsics():
    """A stand-in sequence graph that writes its trajectory and each pixel's row in the whole image (read off the
    band's intrinsics): the assembled bands say each band got its middle row's trajectory at its own place."""
    height, width = 300, 100
    camera = intrinsics(height, width)
    motion = RowMotion(slight_shake, bands=5)

    def run(inputs):
        rows = np.arange(inputs["sharp"].shape[-2])[:, None] + camera[1, 2] - inputs["intrinsics"][0, 1, 2]
        planes = np.broadcast_to(rows, inputs["sharp"].shape[-2:]), np.full(inputs["sharp"].shape[-2:], 0.0)
        value = inputs["trajectory"][0, 0, 0]
        return {"reblurred": np.stack([planes[0], planes[1] + value, inputs["sharp"][0, 0]])[None]}

    sharp = smooth_rgb(height, width)
    outputs = pipeline.sequence_rows(run, sharp, motion, camera, ("reblurred",), 25, 32)["reblurred"]
    assert np.array_equal(outputs[0, 0], np.broadcast_to(np.arange(height)[:, None], (height, width)))
    assert np.array_equal(outputs[0, 2], sharp[..., 0])
    for part in tiles(height, width, height, 8, 5):
        expected = np.float32(slight_shake(middle_row_fraction(part, height))[0, 0])
        assert np.all(outputs[0, 1, part.core_y0 : part.core_y1] == expected)


def test_a_restoration_estimates_then_restores_at_the_bundles_noise_level():
    net, restoration = the_trajectory(0.01), scaling_restoration()
    runners = {"trajectory": net, "restoration": restoration}
    batch = pipeline.rgb_batch(smooth_rgb(120, 200), 32)
    settings = RestoreSettings(estimation_side=64)
    camera = pipeline.image_camera(batch, 300.0, settings)
    result = pipeline.restore(batch, camera, None, runners=runners, bundle=BUNDLE, settings=settings, warn=pytest.fail)
    assert set(result.timings) == {"trajectory", "restoration"} and result.tiles == 1 and result.row_motion is None
    assert net.runs[0]["image"].shape == (1, 3, 38, 64)
    assert np.array_equal(result.trajectory, np.full((25, 3), 0.01, np.float32))
    assert restoration.runs[0]["sigma"].tolist() == [np.float32(0.02)]
    assert np.array_equal(result.restored, batch * np.float32(0.02))
    assert np.array_equal(result.intrinsics, intrinsics(120, 200, 300.0))


def test_a_restoration_with_a_trajectory_given_or_one_per_row_runs_no_trajectory_net():
    runners = {"trajectory": StandIn(pytest.fail), "restoration": scaling_restoration()}
    batch = pipeline.rgb_batch(smooth_rgb(120, 200), 32)
    settings = RestoreSettings(sigma=0.1)
    camera = intrinsics(120, 200)
    given = pipeline.restore(
        batch, camera, slight_shake(1.0), runners=runners, bundle=BUNDLE, settings=settings, warn=pytest.fail
    )
    assert set(given.timings) == {"restoration"} and np.array_equal(given.restored, batch * np.float32(0.1))
    motion = RowMotion(slight_shake, bands=2)
    banded = pipeline.restore(
        batch, camera, motion, runners=runners, bundle=BUNDLE, settings=settings, warn=pytest.fail
    )
    assert banded.row_motion is motion and banded.tiles == 2
    assert np.array_equal(banded.trajectory, slight_shake(0.5).astype(np.float32))


def test_a_frame_fills_the_buffer_while_its_size_stays():
    frame = smooth_bgr8(48, 64)
    batch = pipeline.frame_batch(frame, 32)
    assert batch.shape == (1, 3, 48, 64) and np.array_equal(batch[0, 0], frame[..., 2] / np.float32(255))
    assert pipeline.frame_batch(smooth_bgr8(48, 64, seed=1), 32, batch) is batch
    assert pipeline.frame_batch(smooth_bgr8(64, 48), 32, batch) is not batch
    assert np.array_equal(pipeline.frame_pixels(pipeline.frame_batch(frame, 32)), frame)
    with pytest.raises(ValueError, match="image is 64x31; the bundle needs at least 32 px on each side"):
        pipeline.frame_batch(np.zeros((31, 64, 3), np.uint8), 32)


def test_an_unrefined_result_is_taken_as_the_refinement_takes_it():
    image = smooth_rgb(48, 64)
    result = DeblurResult(
        image * 2, np.zeros((25, 3)), intrinsics(48, 64), {"trajectory": 1.0, "restoration": 2.0, "other": 3.0}
    )
    batch, unrefined = pipeline.unrefined(image, result, min_side_px=32, n_positions=25)
    assert np.array_equal(batch, pipeline.rgb_batch(image, 32))
    assert np.array_equal(unrefined.restored, batch * 2) and unrefined.trajectory.dtype == np.float32
    assert unrefined.timings == {"trajectory": 1.0, "restoration": 2.0}
    with pytest.raises(ValueError, match="the result is 64x40 but the image is 64x48"):
        pipeline.unrefined(image, replace(result, restored=image[:40]), min_side_px=32, n_positions=25)
