"""Tiling: how an axis is cut, how wide the margins are, and that tiles reproduce the whole image in every graph."""

import numpy as np
import pytest

from runtime.core import pipeline, tiling
from runtime.core.backends import BackendSettings, load_runners
from runtime.core.bundle import load_bundle
from runtime.core.camera import intrinsics
from runtime.core.deblurrer import Deblurrer, RestoreSettings
from runtime.core.refine import RefineSettings, graph_function
from runtime.io.media import quantize
from tests.runtime.conftest import smooth_rgb

CPU = BackendSettings("ort-cpu")


def check_spans(spans, length: int, tile: int) -> None:
    cores = [(core_start, core_end) for _, _, core_start, core_end in spans]
    assert cores[0][0] == 0 and cores[-1][1] == length
    # A partition, in order: each core starts where the one before ends.
    assert all(end == next_start for (_, end), (next_start, _) in zip(cores, cores[1:], strict=False))
    for start, end, core_start, core_end in spans:
        assert start % tiling.ALIGN == 0 and start <= core_start < core_end <= end <= length
        assert end - start <= tile


@pytest.mark.parametrize(
    "length, tile, margin, count",
    [
        (1030, 1024, 64, 2),  # just over one tile: two halves, not a full tile and a sliver
        (4000, 1024, 64, 5),
        (4000, 1024, 256, 8),  # cores of at least half a tile
        (5000, 1024, 200, 9),
        (300, 256, 64, 2),
        (257, 256, 64, 2),
        (1000, 256, 64, 8),
        (100_000, 256, 64, 782),  # cores of 128 px
        (999, 160, 72, 63),  # cores of one alignment step
    ],
)
def test_cores_partition_the_axis_and_tiles_start_aligned(length, tile, margin, count):
    spans = tiling.tile_spans(length, tile, margin)
    check_spans(spans, length, tile)
    assert len(spans) == count


def test_an_axis_no_longer_than_a_tile_is_one_tile():
    assert tiling.tile_spans(256, 256, 64) == [(0, 256, 0, 256)]
    assert tiling.tile_spans(33, 1024, 64) == [(0, 33, 0, 33)]


@pytest.mark.parametrize("tile, margin, message", [(256, 60, "multiple of 8"), (256, 128, "cannot hold a core")])
def test_impossible_spans_are_refused(tile, margin, message):
    with pytest.raises(ValueError, match=message):
        tiling.tile_spans(1000, tile, margin)


def test_the_margin_grows_with_the_blur_and_the_iterations():
    assert tiling.tile_margin(0.0) == tiling.MIN_MARGIN
    assert tiling.tile_margin(20.0, n_iter=2) == 64  # 3 extents: 60 px, at least 64
    assert tiling.tile_margin(30.0, n_iter=2) == 96  # 90 px, aligned up
    assert tiling.tile_margin(30.0, n_iter=8) == 184  # 6 extents: 180 px, aligned up
    assert tiling.max_margin(1024) == 256 and tiling.max_margin(300) == 72


def test_tiles_are_restored_with_their_own_intrinsics_and_stitched_in_place():
    """A stand-in restoration that writes each pixel's full-image coordinates, read off the tile's intrinsics."""
    height, width = 200, 264
    camera = intrinsics(height, width, 321.0)

    def restore(blurry, trajectory, tile_camera):
        assert tile_camera[0, 0] == 321.0  # the focal length never changes
        x0, y0 = camera[0, 2] - tile_camera[0, 2], camera[1, 2] - tile_camera[1, 2]
        rows, columns = np.mgrid[0 : blurry.shape[-2], 0 : blurry.shape[-1]]
        return np.stack([columns + x0, rows + y0, blurry[0, 0]])[None]

    blurry = np.random.default_rng(0).random((1, 3, height, width)).astype(np.float32)
    told = []

    def progress(number, total):
        told.append((number, total))

    trajectory_of = lambda _: np.zeros((1, 25, 3))  # noqa: E731
    restored, tiles = tiling.restore_tiled(restore, blurry, trajectory_of, camera, 128, 32, progress)
    rows, columns = np.mgrid[0:height, 0:width]
    assert tiles == 4 * 5 and told == [(number, 20) for number in range(1, 21)]
    assert np.array_equal(restored[0, 0], columns) and np.array_equal(restored[0, 1], rows)
    assert np.array_equal(restored[0, 2], blurry[0, 0])


def test_bands_cut_the_rows_and_each_band_gets_its_middle_rows_trajectory():
    """For motion that changes from row to row: 5 bands of a 300-row image that needs no tiles otherwise."""
    height, width = 300, 100
    parts = tiling.tiles(height, width, 1024, 32, bands=5)
    cores = [(part.core_y0, part.core_y1) for part in parts]
    assert cores == [(0, 64), (64, 120), (120, 176), (176, 240), (240, 300)]  # near-equal, aligned to 8
    assert all(part.x0 == 0 and part.x1 == width for part in parts)
    assert [(part.y0, part.y1) for part in parts][:2] == [(0, 96), (32, 152)]  # widened by the margin

    def restore(blurry, trajectory, tile_camera):
        return np.full_like(blurry, trajectory[0, 0, 0])

    def trajectory_of(part):
        return np.full((1, 25, 3), tiling.middle_row_fraction(part, height))

    blurry = np.zeros((1, 3, height, width), np.float32)
    restored, count = tiling.restore_tiled(restore, blurry, trajectory_of, np.eye(3), 1024, 32, bands=5)
    assert count == 5
    for core_y0, core_y1 in cores:
        assert np.all(restored[0, :, core_y0:core_y1] == np.float32((core_y0 + core_y1 - 1) / 2 / (height - 1)))
    # Bands never get a core under 32 rows: a 48-row image is one band, a 100-row one three at most.
    assert len(tiling.tiles(48, width, 1024, 8, bands=8)) == 1
    assert len(tiling.tiles(100, width, 1024, 8, bands=8)) == 3


def test_tiled_restoration_equals_the_whole_image(small_bundle, recorded_trajectory):
    """A smooth picture blurred by a recorded camera shake (20 px), restored whole and in 2x2 tiles of 256 px."""
    height, width, focal = 264, 288, 1150.0
    camera = intrinsics(height, width, focal)
    extent = tiling.blur_extent_px(recorded_trajectory, camera, height, width)
    with Deblurrer(small_bundle, CPU, RestoreSettings(tile_side=None), log=lambda _: None) as whole:
        _, blurry = whole.sequence(smooth_rgb(height, width), recorded_trajectory, camera)
        expected = whole.restore(blurry, focal, recorded_trajectory)
    said = []
    with Deblurrer(small_bundle, CPU, RestoreSettings(tile_side=256), log=pytest.fail) as tiled:
        result = tiled.restore(blurry, focal, recorded_trajectory, progress=said.append)
        tiled.restore(smooth_rgb(240, 256), focal, recorded_trajectory, progress=pytest.fail)  # one tile: nothing
    assert said == [f"restoring: tile {number}/4" for number in range(1, 5)]
    error = np.abs(result.restored - expected.restored)
    margin = tiling.tile_margin(extent, 2)
    print(f"extent {extent:.1f} px, margin {margin} px, {result.tiles} tiles: max {error.max():.2e}")
    assert 20 < extent < 21 and result.tiles == 4 and expected.tiles == 1
    assert error.max() <= 1e-3


def test_the_warp_margin_is_one_blur_extent_and_a_cell():
    assert tiling.warp_margin(0.0) == 8
    assert tiling.warp_margin(20.5) == 24
    assert tiling.warp_margin(30.0) == 32


#: Wider than two warp tiles of 256 px, so the warp graphs run in 3 tiles across.
WIDE = (240, 600)


@pytest.fixture(scope="module")
def wide_shake():
    """A smooth picture and its camera, at whose focal length the recorded shake spans ~20 px."""
    camera = intrinsics(*WIDE, 1150.0)
    return smooth_rgb(*WIDE), camera


def as_batch(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])


def spy_on_warp_graphs(monkeypatch) -> list[tuple[int, int]]:
    """Record the image size of every run of a graph the Deblurrer runs through `graph_function`."""
    sizes = []

    def recording(runner):
        run = graph_function(runner)

        def spied(inputs):
            sizes.append(next(value for value in inputs.values() if value.ndim == 4).shape[-2:])
            return run(inputs)

        return spied

    monkeypatch.setattr(pipeline, "graph_function", recording)
    return sizes


def test_the_sequence_in_tiles_equals_the_whole_image(small_bundle, recorded_trajectory, wide_shake, monkeypatch):
    image, camera = wide_shake
    with Deblurrer(small_bundle, CPU, RestoreSettings(tile_side=None), log=pytest.fail) as whole:
        frames, reblurred = whole.sequence(image, recorded_trajectory, camera)
    sizes = spy_on_warp_graphs(monkeypatch)
    with Deblurrer(small_bundle, CPU, RestoreSettings(tile_side=256), log=pytest.fail) as tiled:
        tiled_frames, tiled_reblurred = tiled.sequence(image, recorded_trajectory, camera)
        reblurred_alone = tiled.reblur(image, recorded_trajectory, camera)
    frame_error, reblur_error = np.abs(tiled_frames - frames).max(), np.abs(tiled_reblurred - reblurred).max()
    print(f"tiles {sizes}: frames max {frame_error:.2e}, reblurred max {reblur_error:.2e}")
    assert len(sizes) == 6 and all(max(size) <= 256 for size in sizes)  # 3 tiles, twice
    assert tiled_frames.shape == frames.shape and reblurred_alone.shape == reblurred.shape == (*WIDE, 3)
    assert frame_error <= 1e-4 and reblur_error <= 1e-4  # float rounding of positions far from the centre
    assert np.array_equal(reblurred_alone, tiled_reblurred)
    with Deblurrer(small_bundle, CPU, RestoreSettings(tile_side=256), log=pytest.fail) as tiled:
        eight_bit, eight_bit_reblurred = tiled.sequence(image, recorded_trajectory, camera, eight_bit=True)
    # Rounded tile by tile to what the float frames round to; the mean stays float.
    assert eight_bit.dtype == np.uint8 and np.array_equal(eight_bit, quantize(tiled_frames))
    assert np.array_equal(eight_bit_reblurred, tiled_reblurred)


def test_the_refine_graph_in_tiles_gives_the_whole_loss_and_gradient(small_bundle, recorded_trajectory, wide_shake):
    image, camera = wide_shake
    runners = load_runners(load_bundle(small_bundle), ("refine", "sequence"), CPU)[1]
    run_refine = graph_function(runners["refine"])
    camera_input = camera[None].astype(np.float32)
    sequence_inputs = {"sharp": as_batch(image), "trajectory": recorded_trajectory[None], "intrinsics": camera_input}
    blurry = graph_function(runners["sequence"])(sequence_inputs)["reblurred"]
    mask = np.ones((1, 1, *WIDE), np.float32)
    mask[..., :, :200] = 0  # the first tile's core holds no pixel that counts
    mask[..., ::7, 300:] = 0
    inputs = {
        "blurry": blurry,
        "latent": as_batch(smooth_rgb(*WIDE, seed=1) * 0.5 + image * 0.5),
        "trajectory": (recorded_trajectory * 0.8)[None],
        "intrinsics": camera_input,
        "mask": mask,
    }
    whole = run_refine(inputs)
    tiled = tiling.refine_tiled(run_refine, 256)(inputs)
    loss_error = abs(float(tiled["loss"][0]) / float(whole["loss"][0]) - 1)
    gradient_error = np.abs(tiled["gradient"] - whole["gradient"]).max() / np.abs(whole["gradient"]).max()
    print(f"relative error: loss {loss_error:.2e}, gradient {gradient_error:.2e}")
    assert tiled["loss"].shape == whole["loss"].shape and tiled["gradient"].shape == whole["gradient"].shape
    assert loss_error <= 1e-4 and gradient_error <= 1e-3
    nothing_counts = tiling.refine_tiled(run_refine, 256)({**inputs, "mask": np.zeros_like(mask)})
    assert nothing_counts["loss"][0] == 0 and not nothing_counts["gradient"].any()


@pytest.mark.slow
def test_refinement_runs_its_graphs_in_tiles(small_bundle, recorded_trajectory, wide_shake, monkeypatch):
    image, camera = wide_shake
    settings = RefineSettings(steps=3, scales=(1.0,))
    with Deblurrer(small_bundle, CPU, RestoreSettings(tile_side=None), refine=settings, log=pytest.fail) as whole:
        blurry = whole.reblur(image, recorded_trajectory, camera)
        expected = whole.restore(blurry, 1150.0, recorded_trajectory * 0.8)
    sizes = spy_on_warp_graphs(monkeypatch)
    with Deblurrer(small_bundle, CPU, RestoreSettings(tile_side=256), refine=settings, log=pytest.fail) as tiled:
        result = tiled.restore(blurry, 1150.0, recorded_trajectory * 0.8)
    assert all(max(size) <= 256 for size in sizes) and len(sizes) >= 3 * 4
    assert result.refinement.loss_before == pytest.approx(expected.refinement.loss_before, rel=1e-4)
    assert result.refinement.loss_after == pytest.approx(expected.refinement.loss_after, rel=1e-3)
    # Adam steps by the gradient's sign where it is near zero, so rounding may turn a component's step around;
    # each step moves at most one step size (px at the focal length).
    assert np.abs(result.trajectory - expected.trajectory).max() <= 3 * 2 * settings.step_size / 1150.0
    assert result.refinement.loss_after < result.refinement.loss_before
