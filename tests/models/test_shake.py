"""The hand-shake simulator and the trajectory transforms that match image flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.geometry import intrinsics, sampling_positions
from models.pmbm import blur, blur_grids
from models.shake import (
    N_POSES,
    blur_extent_px,
    flip_trajectory,
    random_trajectory,
    rotate_trajectory90,
    shake_angles,
)


def _extent(trajectory: np.ndarray, focal: float, height: int, width: int) -> float:
    camera = intrinsics(height, width, focal).double()
    return float(blur_extent_px(torch.from_numpy(trajectory)[None], camera, height, width)[0])


# --- the simulator ----------------------------------------------------------------------------------------------


def test_simulated_trajectories_are_deterministic_given_a_seed():
    first = random_trajectory(np.random.default_rng(7), 8.0, 150.0, 96, 128)
    again = random_trajectory(np.random.default_rng(7), 8.0, 150.0, 96, 128)
    other = random_trajectory(np.random.default_rng(8), 8.0, 150.0, 96, 128)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.mark.parametrize("target", [2.0, 7.5, 15.0])
def test_simulated_blur_has_the_requested_extent_in_pixels(target):
    rng = np.random.default_rng(int(target * 10))
    for focal in (80.0, 300.0):
        trajectory = random_trajectory(rng, target, focal, 96, 128)
        assert trajectory.shape == (N_POSES, 3)
        np.testing.assert_allclose(trajectory.mean(axis=0), 0.0, atol=1e-12)
        assert _extent(trajectory, focal, 96, 128) == pytest.approx(target, rel=1e-4)


def test_simulated_shake_is_smooth_with_a_smaller_roll():
    rng = np.random.default_rng(0)
    samples = [shake_angles(rng) for _ in range(200)]
    spread = np.array([sample.std(axis=0) for sample in samples])
    assert np.median(spread[:, 2] / spread[:, :2].mean(axis=1)) < 0.7  # roll included, smaller
    assert np.all(spread[:, 2] > 0)
    # inertia: consecutive angular velocities point the same way far more often than not
    velocities = [np.diff(sample, axis=0) for sample in samples]
    cosines = [
        np.sum(v[1:] * v[:-1], axis=1) / (np.linalg.norm(v[1:], axis=1) * np.linalg.norm(v[:-1], axis=1))
        for v in velocities
    ]
    assert np.median(np.concatenate(cosines)) > 0.8


# --- transforms that go with flips and quarter turns ------------------------------------------------------------


def _blur(image: np.ndarray, trajectory: np.ndarray, camera: torch.Tensor) -> np.ndarray:
    """Blur an `(H, W, C)` float64 image."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    traj = torch.from_numpy(trajectory)[None]
    grids = blur_grids(traj, camera, image.shape[0], image.shape[1])
    return blur(tensor, grids)[0].permute(1, 2, 0).numpy()


def _centred_camera(size: int, focal: float) -> torch.Tensor:
    """Principal point on the pixel grid's centre, so that flips and turns map the camera onto itself."""
    return intrinsics(size, size, focal, principal_point=((size - 1) / 2, (size - 1) / 2)).double()


IMAGE_TRANSFORMS = {
    "horizontal flip": (lambda image: image[:, ::-1], lambda t: flip_trajectory(t, horizontal=True)),
    "vertical flip": (lambda image: image[::-1], lambda t: flip_trajectory(t, vertical=True)),
    "both flips": (lambda image: image[::-1, ::-1], lambda t: flip_trajectory(t, horizontal=True, vertical=True)),
    **{
        f"rot90 x{k}": (
            (lambda image, k=k: np.rot90(image, k, axes=(0, 1))),
            (lambda t, k=k: rotate_trajectory90(t, k)),
        )
        for k in (1, 2, 3, -1)
    },
}


@pytest.mark.parametrize("name", list(IMAGE_TRANSFORMS))
def test_blurring_the_transformed_image_with_the_transformed_trajectory_equals_transforming_the_blur(name):
    transform_image, transform_trajectory = IMAGE_TRANSFORMS[name]
    size, focal, margin = 64, 60.0, 12
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 1, (size, size, 3))
    trajectory = random_trajectory(rng, 8.0, focal, size, size)
    trajectory[:, 2] *= 4  # a strong roll, so a wrong roll sign cannot hide
    camera = _centred_camera(size, focal)
    expected = transform_image(_blur(image, trajectory, camera))
    actual = _blur(transform_image(image), transform_trajectory(trajectory), camera)
    inner = (slice(margin, -margin), slice(margin, -margin))
    np.testing.assert_allclose(actual[inner], expected[inner], atol=1e-9)
    # the test has teeth: the untransformed trajectory gives a different blur
    wrong = _blur(transform_image(image), trajectory, camera)
    assert np.abs(wrong[inner] - expected[inner]).max() > 0.05


def test_with_the_default_principal_point_a_flip_moves_the_blur_by_under_a_tenth_of_a_pixel():
    """The runtime's principal point (W/2, H/2) is half a pixel off the grid's centre, so a flipped image's
    optical centre moves by one pixel; for a strong 15 px blur at a short focal length that changes the
    sampling positions by under 0.1 px."""
    size, focal = 128, 0.8 * 128
    trajectory = random_trajectory(np.random.default_rng(4), 15.0, focal, size, size)
    trajectory[:, 2] *= 3
    camera = intrinsics(size, size, focal)
    x, y = sampling_positions(torch.from_numpy(trajectory).float()[None], camera, size, size)
    flipped = torch.from_numpy(flip_trajectory(trajectory, horizontal=True)).float()[None]
    fx, fy = sampling_positions(flipped, camera, size, size)
    # flipping the blurred image: output pixel x samples where the original sampled at W-1-x, mirrored
    mirrored_x, mirrored_y = (size - 1) - x.flip(-1), y.flip(-1)
    assert float(torch.maximum((fx - mirrored_x).abs(), (fy - mirrored_y).abs()).max()) < 0.1
