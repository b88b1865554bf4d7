"""Pictures of the camera shake: kernels that are true to the blur model, figures of the expected size."""

import numpy as np
import pytest

from runtime.core.camera import intrinsics
from runtime.io import drawing, pictures


@pytest.mark.parametrize("magnify", [1.0, 3.0])
def test_a_kernel_sums_to_one_and_is_centred_on_the_mean_displacement(magnify):
    path = np.cumsum(np.random.default_rng(1).normal(0, 0.8, (25, 2)), axis=0)
    path -= path.mean(axis=0) - [1.3, -2.2]
    kernel = pictures.render_kernel(path, 63, magnify)
    assert kernel.shape == (63, 63) and abs(kernel.sum() - 1) < 1e-12
    rows, columns = np.mgrid[0:63, 0:63]
    centroid = np.array([(kernel * columns).sum(), (kernel * rows).sum()]) - 31
    assert np.abs(centroid - magnify * path.mean(axis=0)).max() < 1e-9


def test_no_motion_is_one_pixel_and_motion_off_the_patch_is_nothing():
    still = pictures.render_kernel(np.zeros((25, 2)), 9)
    assert still[4, 4] == 1 and still.sum() == 1
    assert not pictures.render_kernel(np.full((25, 2), 50.0), 9).any()


def test_a_long_stroke_has_no_gaps():
    kernel = pictures.render_kernel([[-20, 0], [20, 0]], 51)
    assert (kernel[25, 5:46] > 0).all()


@pytest.fixture(scope="module")
def shake() -> np.ndarray:
    poses = np.zeros((25, 3))
    poses[:, 1] = np.linspace(-0.02, 0.02, 25)  # yaw: a horizontal stroke
    poses[:, 2] = np.linspace(-0.03, 0.03, 25)  # roll: longer towards the corners
    return poses


def drawn_spread(field: np.ndarray, point: np.ndarray, radius: int) -> np.ndarray:
    """Standard deviation (x, y) of the bright pixels of the kernel drawn around a grid point on black."""
    x, y = point.astype(int)
    patch = field[y - radius : y + radius + 1, x - radius : x + radius + 1].astype(int).sum(axis=2)
    rows, columns = np.nonzero(patch > 150)
    return np.array([columns.std(), rows.std()])


@pytest.mark.parametrize("shape", [(240, 320, 3), (320, 240, 3), (240, 320)])
def test_the_kernel_field_draws_on_a_copy_of_the_picture(shake, shape):
    black = np.zeros(shape, np.uint8)
    height, width = shape[:2]
    field = pictures.kernel_field(black, shake, intrinsics(height, width))
    assert field.shape == (height, width, 3) and field.dtype == np.uint8 and not black.any()
    points = pictures.grid_points(height, width, (5, 7) if width >= height else (7, 5))
    assert all(field[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4].any() for x, y in points)


@pytest.mark.parametrize("axis, across", [(1, "horizontal"), (0, "vertical")])
def test_kernels_follow_the_motion(axis, across):
    """Yaw strokes every kernel horizontally, pitch vertically; roll turns them around the centre."""
    poses = np.zeros((25, 3))
    poses[:, axis] = np.linspace(-0.02, 0.02, 25)
    field = pictures.kernel_field(np.zeros((240, 320, 3), np.uint8), poses, intrinsics(240, 320))
    for point in pictures.grid_points(240, 320, (5, 7))[1:]:  # the first box lies under the label
        spread_x, spread_y = drawn_spread(field, point, 14)
        assert (spread_x > 4 * spread_y) if across == "horizontal" else (spread_y > 4 * spread_x)

    roll = np.zeros((25, 3))
    roll[:, 2] = np.linspace(-0.05, 0.05, 25)
    field = pictures.kernel_field(np.zeros((240, 320, 3), np.uint8), roll, intrinsics(240, 320))
    points = pictures.grid_points(240, 320, (5, 7))
    left, right, top, bottom = points[14], points[20], points[3], points[31]
    for point, vertical in [(left, True), (right, True), (top, False), (bottom, False)]:
        spread_x, spread_y = drawn_spread(field, point, 14)
        assert (spread_y > 2 * spread_x) if vertical else (spread_x > 2 * spread_y)


def test_no_shake_draws_dots():
    black = np.zeros((240, 320, 3), np.uint8)
    field = pictures.kernel_field(black, np.zeros((25, 3)), intrinsics(240, 320))
    for x, y in pictures.grid_points(240, 320, (5, 7)).astype(int):
        assert field[y, x].astype(int).sum() > 200  # a bright dot at each point ...
        patch = field[y - 12 : y + 13, x - 12 : x + 13].astype(int).sum(axis=2)
        assert (patch > 100).sum() <= 9  # ... and only a dot


def test_the_kernel_field_refuses_float_pictures(shake):
    with pytest.raises(ValueError, match="expected a uint8 image, got float32"):
        pictures.kernel_field(np.zeros((64, 64, 3), np.float32), shake, intrinsics(64, 64))


@pytest.mark.parametrize("size", [(480, 960), (300, 500)])
def test_the_trajectory_plot_is_a_figure_of_the_asked_size(shake, size):
    figure = pictures.trajectory_plot(shake, 320.0, (240, 320), size=size)
    assert figure.shape == (*size, 3) and figure.dtype == np.uint8
    assert (figure == 255).all(axis=2).mean() > 0.5  # mostly white paper
    colours = {tuple(pixel) for pixel in figure.reshape(-1, 3)}
    for colour in [c for _, c in drawing.PITCH_YAW_ROLL] + [pictures.PATH, drawing.START, pictures.END]:
        assert colour in colours


def test_the_plot_of_no_shake_marks_start_and_end_at_the_origin():
    figure = pictures.trajectory_plot(np.zeros((25, 3)), 320.0, (240, 320))
    start = np.argwhere((figure == drawing.START).all(axis=2))
    end = np.argwhere((figure == pictures.END).all(axis=2))
    # Both markers sit in the right panel around the same point (the legend holds samples too: take the lowest).
    assert len(start) and len(end)
    assert np.abs(np.median(start[start[:, 0] > 150], axis=0) - np.median(end[end[:, 0] > 150], axis=0)).max() < 3
