"""The runtime's numpy camera model agrees with the reference's torch one (`models.geometry`)."""

import numpy as np
import pytest
import torch

from models import geometry
from runtime.core import camera
from runtime.core.limits import LimitError

HEIGHT, WIDTH = 45, 64


@pytest.fixture(scope="module")
def trajectory() -> np.ndarray:
    """Shake of a few degrees with a zero and a tiny pose (the Rodrigues epsilon matters there)."""
    poses = 0.05 * np.random.default_rng(0).standard_normal((25, 3))
    poses[3] = 0.0
    poses[7] = [1e-7, -2e-7, 5e-8]
    return poses


def torch_positions(trajectory: np.ndarray, intrinsics: np.ndarray, height: int, width: int) -> np.ndarray:
    """The reference's sampling positions `(P, H, W, 2)` xy, computed in float64."""
    mapped_x, mapped_y = geometry.sampling_positions(
        torch.from_numpy(trajectory)[None], torch.from_numpy(intrinsics)[None], height, width
    )
    return np.stack([mapped_x[0].numpy(), mapped_y[0].numpy()], axis=-1)


def pixel_grid(height: int, width: int) -> np.ndarray:
    rows, columns = np.mgrid[0:height, 0:width]
    return np.stack([columns, rows], axis=-1).reshape(-1, 2).astype(np.float64)


@pytest.mark.parametrize("focal, centre", [(None, None), (3900.0, None), (700.0, (30.5, 20.0))])
def test_intrinsics_agree(focal, centre):
    expected = geometry.intrinsics(HEIGHT, WIDTH, focal, centre)[0].numpy()
    assert np.array_equal(camera.intrinsics(HEIGHT, WIDTH, focal, centre), expected)


def test_the_inverse_is_analytic_and_exact():
    k = camera.intrinsics(HEIGHT, WIDTH, 123.0, (40.0, 10.0))
    assert np.abs(camera.intrinsics_inverse(k) @ k - np.eye(3)).max() < 1e-15


def test_rotations_agree(trajectory):
    expected = geometry.rotation_matrices(torch.from_numpy(trajectory)).numpy()
    rotations = camera.rotation_matrices(trajectory)
    assert np.abs(rotations - expected).max() < 1e-12
    assert np.array_equal(rotations[3], np.eye(3))
    # Orthonormal up to the reference's epsilon, as its rotations are.
    assert np.abs(rotations @ rotations.swapaxes(-1, -2) - np.eye(3)).max() < 1e-5


def test_homographies_agree(trajectory):
    k = camera.intrinsics(HEIGHT, WIDTH, 90.0)
    expected = geometry.homographies(torch.from_numpy(trajectory)[None], torch.from_numpy(k)[None])[0].numpy()
    assert np.abs(camera.homographies(trajectory, k) - expected).max() < 1e-9


def test_point_paths_are_where_the_reverse_motion_samples(trajectory):
    """Rodrigues of -theta is R(theta)^T exactly, so a point's path under -theta is the reference's sampling."""
    k = camera.intrinsics(HEIGHT, WIDTH)
    expected = torch_positions(trajectory, k, HEIGHT, WIDTH).reshape(25, -1, 2)
    paths = camera.point_paths(-trajectory, k, pixel_grid(HEIGHT, WIDTH))
    assert paths.shape == (25, HEIGHT * WIDTH, 2)
    assert np.abs(paths - expected).max() < 1e-6


def test_point_paths_undo_the_sampling(trajectory):
    """Pose i samples the sharp image at `H_i^-1 p`; that point travels back to `p` under pose i."""
    k = camera.intrinsics(HEIGHT, WIDTH, 80.0)
    sampled = torch_positions(trajectory, k, HEIGHT, WIDTH).reshape(25, -1, 2)
    grid = pixel_grid(HEIGHT, WIDTH)
    for pose in range(25):
        back = camera.point_paths(trajectory[pose : pose + 1], k, sampled[pose])[0]
        assert np.abs(back - grid).max() < 1e-6


def test_a_tile_sees_the_full_image_sampling_shifted(trajectory):
    k = camera.intrinsics(HEIGHT, WIDTH, 75.0)
    full = torch_positions(trajectory, k, HEIGHT, WIDTH)
    x0, y0, height, width = 24, 8, 21, 32
    tile = torch_positions(trajectory, camera.tile_intrinsics(k, x0, y0), height, width)
    assert np.abs(tile - (full[:, y0 : y0 + height, x0 : x0 + width] - [x0, y0])).max() < 1e-9
    assert np.array_equal(k, camera.intrinsics(HEIGHT, WIDTH, 75.0))  # the input is not changed


def test_a_resized_image_has_scaled_paths(trajectory):
    k = camera.intrinsics(HEIGHT, WIDTH)
    points = pixel_grid(HEIGHT, WIDTH)
    scaled = camera.point_paths(trajectory, camera.scale_intrinsics(k, 2.5), 2.5 * points)
    assert np.abs(scaled - 2.5 * camera.point_paths(trajectory, k, points)).max() < 1e-9


def test_a_35mm_equivalent_focal_length_gives_the_same_diagonal_field_of_view():
    # A 36 mm lens on a 36 x 24 mm frame sees the frame's width at one focal length: f = width in pixels.
    assert camera.focal_length_from_35mm(36.0, 2400, 3600) == pytest.approx(3600.0)
    # A 4:3 phone photo from a 26 mm-equivalent lens: the diagonal (5000 px) over the film's (43.27 mm).
    assert camera.focal_length_from_35mm(26.0, 3000, 4000) == pytest.approx(26.0 * 5000 / np.hypot(36, 24))
    assert camera.focal_length_from_35mm(26.0, 4000, 3000) == camera.focal_length_from_35mm(26.0, 3000, 4000)


@pytest.mark.parametrize(("focal", "shown"), [(1e30, "1e+30"), (float("nan"), "nan"), (0.0, "0"), (-500.0, "-500")])
def test_a_focal_length_no_camera_has_is_refused_before_it_turns_to_nan(focal, shown):
    """At 1e30 px a trajectory of 0.01 rad moves points by 1e28 px; such a camera is refused where it is made."""
    with pytest.raises(LimitError) as caught:
        camera.intrinsics(HEIGHT, WIDTH, focal)
    assert str(caught.value) == f"camera intrinsics: focal length {shown} px is outside 1..1000000 px"
    assert camera.intrinsics(HEIGHT, WIDTH, 1e6)[0, 0] == 1e6
