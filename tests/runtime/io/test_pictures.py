"""Pictures of the camera shake: kernels that are true to the blur model, figures of the expected size."""

import cv2
import numpy as np
import pytest

from runtime.core.camera import intrinsics
from runtime.io import pictures as visualize


@pytest.mark.parametrize("magnify", [1.0, 3.0])
def test_a_kernel_sums_to_one_and_is_centred_on_the_mean_displacement(magnify):
    path = np.cumsum(np.random.default_rng(1).normal(0, 0.8, (25, 2)), axis=0)
    path -= path.mean(axis=0) - [1.3, -2.2]
    kernel = visualize.render_kernel(path, 63, magnify)
    assert kernel.shape == (63, 63) and abs(kernel.sum() - 1) < 1e-12
    rows, columns = np.mgrid[0:63, 0:63]
    centroid = np.array([(kernel * columns).sum(), (kernel * rows).sum()]) - 31
    assert np.abs(centroid - magnify * path.mean(axis=0)).max() < 1e-9


def test_no_motion_is_one_pixel_and_motion_off_the_patch_is_nothing():
    still = visualize.render_kernel(np.zeros((25, 2)), 9)
    assert still[4, 4] == 1 and still.sum() == 1
    assert not visualize.render_kernel(np.full((25, 2), 50.0), 9).any()


def test_a_long_stroke_has_no_gaps():
    kernel = visualize.render_kernel([[-20, 0], [20, 0]], 51)
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
    field = visualize.kernel_field(black, shake, intrinsics(height, width))
    assert field.shape == (height, width, 3) and field.dtype == np.uint8 and not black.any()
    points = visualize.grid_points(height, width, (5, 7) if width >= height else (7, 5))
    assert all(field[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4].any() for x, y in points)


@pytest.mark.parametrize("axis, across", [(1, "horizontal"), (0, "vertical")])
def test_kernels_follow_the_motion(axis, across):
    """Yaw strokes every kernel horizontally, pitch vertically; roll turns them around the centre."""
    poses = np.zeros((25, 3))
    poses[:, axis] = np.linspace(-0.02, 0.02, 25)
    field = visualize.kernel_field(np.zeros((240, 320, 3), np.uint8), poses, intrinsics(240, 320))
    for point in visualize.grid_points(240, 320, (5, 7))[1:]:  # the first box lies under the label
        spread_x, spread_y = drawn_spread(field, point, 14)
        assert (spread_x > 4 * spread_y) if across == "horizontal" else (spread_y > 4 * spread_x)

    roll = np.zeros((25, 3))
    roll[:, 2] = np.linspace(-0.05, 0.05, 25)
    field = visualize.kernel_field(np.zeros((240, 320, 3), np.uint8), roll, intrinsics(240, 320))
    points = visualize.grid_points(240, 320, (5, 7))
    left, right, top, bottom = points[14], points[20], points[3], points[31]
    for point, vertical in [(left, True), (right, True), (top, False), (bottom, False)]:
        spread_x, spread_y = drawn_spread(field, point, 14)
        assert (spread_y > 2 * spread_x) if vertical else (spread_x > 2 * spread_y)


def test_no_shake_draws_dots():
    black = np.zeros((240, 320, 3), np.uint8)
    field = visualize.kernel_field(black, np.zeros((25, 3)), intrinsics(240, 320))
    for x, y in visualize.grid_points(240, 320, (5, 7)).astype(int):
        assert field[y, x].astype(int).sum() > 200  # a bright dot at each point ...
        patch = field[y - 12 : y + 13, x - 12 : x + 13].astype(int).sum(axis=2)
        assert (patch > 100).sum() <= 9  # ... and only a dot


def test_the_kernel_field_refuses_float_pictures(shake):
    with pytest.raises(ValueError, match="expected a uint8 image, got float32"):
        visualize.kernel_field(np.zeros((64, 64, 3), np.float32), shake, intrinsics(64, 64))


@pytest.mark.parametrize("size", [(480, 960), (300, 500)])
def test_the_trajectory_plot_is_a_figure_of_the_asked_size(shake, size):
    figure = visualize.trajectory_plot(shake, 320.0, (240, 320), size=size)
    assert figure.shape == (*size, 3) and figure.dtype == np.uint8
    assert (figure == 255).all(axis=2).mean() > 0.5  # mostly white paper
    colours = {tuple(pixel) for pixel in figure.reshape(-1, 3)}
    for colour in [c for _, c in visualize.PITCH_YAW_ROLL] + [visualize.PATH, visualize.START, visualize.END]:
        assert colour in colours


def test_the_plot_of_no_shake_marks_start_and_end_at_the_origin():
    figure = visualize.trajectory_plot(np.zeros((25, 3)), 320.0, (240, 320))
    start = np.argwhere((figure == visualize.START).all(axis=2))
    end = np.argwhere((figure == visualize.END).all(axis=2))
    # Both markers sit in the right panel around the same point (the legend holds samples too: take the lowest).
    assert len(start) and len(end)
    assert np.abs(np.median(start[start[:, 0] > 150], axis=0) - np.median(end[end[:, 0] > 150], axis=0)).max() < 3


def test_the_sensitivity_chart_draws_each_line_in_its_colour():
    series = [
        ("towards the truth", [(0.0, 3.0, "b=0"), (1.0, 1.0, "b=0.5"), (2.0, -1.0, "b=1")]),
        ("scaled", [(1.5, 0.5, "s=0.5"), (2.0, -1.0, "s=1")]),
    ]
    figure = visualize.sensitivity_chart(series, "title", size=(400, 600))
    assert figure.shape == (400, 600, 3) and figure.dtype == np.uint8
    for (_, colour), count in zip(visualize.PITCH_YAW_ROLL, (3, 2), strict=False):
        assert np.all(figure == colour, axis=-1).sum() > 50 * count
    assert not np.any(np.all(figure == visualize.PITCH_YAW_ROLL[2][1], axis=-1))
    with pytest.raises(ValueError, match="no points"):
        visualize.sensitivity_chart([("empty", [])], "title")


def test_the_drift_chart_draws_each_windows_offset_and_the_line():
    times = np.array([2.5, 7.5, 12.5, 17.5])
    figure = visualize.drift_chart(times, 0.1537 + 300e-6 * times, 0.1537, 300e-6, size=(420, 760))
    assert figure.shape == (420, 760, 3) and figure.dtype == np.uint8
    assert np.all(figure == visualize.PITCH_YAW_ROLL[0][1], axis=-1).sum() > 500  # the line, across the plot
    dots = np.all(figure == visualize.START, axis=-1).astype(np.uint8)
    count, _, _, centres = cv2.connectedComponentsWithStats(dots)
    assert count - 1 == 4  # one dot a window, rising left to right (the offset grows with the drift)
    ordered = centres[1:][np.argsort(centres[1:, 0])]
    assert np.all(np.diff(ordered[:, 1]) < 0)
