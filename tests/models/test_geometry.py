import math

import numpy as np
import pytest
import torch

from models import geometry


def random_trajectory(batch: int = 2, poses: int = 25, scale: float = 0.05, seed: int = 0) -> torch.Tensor:
    return scale * torch.randn(batch, poses, 3, generator=torch.Generator().manual_seed(seed))


def test_default_intrinsics_follow_the_reference():
    camera = geometry.intrinsics(120, 88)
    expected = torch.tensor([[[120.0, 0, 44], [0, 120, 60], [0, 0, 1]]])
    assert torch.equal(camera, expected)


def test_given_focal_lengths_and_principal_point():
    camera = geometry.intrinsics(100, 200, focal_length_px=torch.tensor([3900.0, 500.0]), principal_point=(90, 40))
    assert camera.shape == (2, 3, 3)
    assert camera[:, 0, 0].tolist() == [3900.0, 500.0]
    assert camera[1, :2, 2].tolist() == [90.0, 40.0]


def test_zero_trajectory_samples_every_pixel_at_itself():
    mapped_x, mapped_y = geometry.sampling_positions(
        torch.zeros(2, 25, 3), geometry.intrinsics(30, 40, batch=2), 30, 40
    )
    x, y = geometry.pixel_coordinates(30, 40, mapped_x)
    assert torch.equal(mapped_x, x.expand_as(mapped_x))
    assert torch.equal(mapped_y, y.expand_as(mapped_y))


def test_rotations_are_orthonormal_with_unit_determinant(monkeypatch):
    trajectory = random_trajectory(scale=0.5).double()
    identity = torch.eye(3, dtype=torch.float64).expand(2, 25, 3, 3)
    # The reference's epsilon shortens the axis by eps/|theta|: orthonormal to ~eps*|theta| (measured 1.8e-6).
    rotations = geometry.rotation_matrices(trajectory)
    assert (rotations @ rotations.transpose(-1, -2) - identity).abs().max() <= 1e-5
    monkeypatch.setattr(geometry, "RODRIGUES_EPS", 0.0)
    rotations = geometry.rotation_matrices(trajectory)
    assert torch.allclose(rotations @ rotations.transpose(-1, -2), identity, atol=1e-12)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(2, 25, dtype=torch.float64), atol=1e-12)


def test_analytic_inverses_equal_numerical_inverses():
    trajectory = random_trajectory().double()
    camera = geometry.intrinsics(120, 88, batch=2).double()
    numerical = torch.linalg.inv(geometry.homographies(trajectory, camera))
    assert torch.allclose(geometry.inverse_homographies(trajectory, camera), numerical, atol=1e-9)
    assert torch.allclose(geometry.intrinsics_inverse(camera), torch.linalg.inv(camera), atol=1e-15)


@pytest.mark.parametrize("shift_px", [3.0, 17.5])
def test_yaw_of_atan_d_over_f_moves_the_centre_by_d_pixels(shift_px, monkeypatch):
    focal, height, width = 300.0, 64, 96
    camera = geometry.intrinsics(height, width, focal_length_px=focal).double()
    centre = torch.tensor([width / 2, height / 2, 1.0], dtype=torch.float64)
    yaw = torch.tensor([[[0.0, math.atan(shift_px / focal), 0.0]]], dtype=torch.float64)
    pitch = yaw[..., [1, 0, 2]]
    expected = {"yaw": torch.tensor([shift_px, 0.0]), "pitch": torch.tensor([0.0, -shift_px])}

    def centre_motion(rotation):
        moved = geometry.homographies(rotation, camera)[0, 0] @ centre
        return (moved[:2] / moved[2] - centre[:2]).float()

    # With the reference's epsilon the axis is short by eps/|theta|: off by d * eps/|theta| <= 1e-3 px here.
    assert torch.allclose(centre_motion(yaw), expected["yaw"], atol=1e-3)
    monkeypatch.setattr(geometry, "RODRIGUES_EPS", 0.0)
    assert torch.allclose(centre_motion(yaw), expected["yaw"], atol=1e-6)
    assert torch.allclose(centre_motion(pitch), expected["pitch"], atol=1e-6)


def test_batched_images_equal_one_at_a_time():
    trajectory = random_trajectory()
    camera = geometry.intrinsics(20, 30, focal_length_px=torch.tensor([30.0, 80.0]))
    batched = geometry.displacement_field(trajectory, camera, 20, 30)
    for index in range(2):
        single = geometry.displacement_field(trajectory[index : index + 1], camera[index : index + 1], 20, 30)
        assert torch.equal(batched[index : index + 1], single)


def test_displacement_matches_the_authors_offsets(case_b):
    """Tolerance 1e-4 px; measured 4.6e-5 px."""
    ours = geometry.displacement_field(
        torch.from_numpy(case_b["trajectory"]), torch.from_numpy(case_b["intrinsics"]), 120, 88
    )
    assert np.abs(ours.numpy() - case_b["offsets"]).max() <= 1e-4


def test_default_intrinsics_match_the_authors(case_b):
    assert torch.equal(geometry.intrinsics(120, 88), torch.from_numpy(case_b["intrinsics"]))


def test_reflected_positions_sample_as_grid_sample_reflection_padding():
    """Reflecting positions (several bounces, both sides) then sampling in range equals reflection padding."""
    height, width = 9, 13
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(1, 2, height, width, generator=generator, dtype=torch.float64)
    # One position per output pixel (the grid's shape is the image's), spread over several periods both ways.
    x = (torch.rand(1, 1, height, width, generator=generator, dtype=torch.float64) - 0.4) * 7 * width
    y = (torch.rand(1, 1, height, width, generator=generator, dtype=torch.float64) - 0.4) * 5 * height
    x_in, _ = geometry.reflect_positions(x, width)
    y_in, _ = geometry.reflect_positions(y, height)
    assert x_in.min() >= 0 and x_in.max() <= width - 1 and y_in.min() >= 0 and y_in.max() <= height - 1
    expected = torch.nn.functional.grid_sample(
        image, geometry.normalized_grid(x, y), padding_mode="reflection", align_corners=True
    )
    actual = torch.nn.functional.grid_sample(
        image, geometry.normalized_grid(x_in, y_in), padding_mode="zeros", align_corners=True
    )
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)


def test_reflection_slope_is_the_derivative_of_the_reflection():
    position = torch.linspace(-40.3, 55.7, 97, dtype=torch.float64, requires_grad=True)
    reflected, slope = geometry.reflect_positions(position, 11)
    (derivative,) = torch.autograd.grad(reflected.sum(), position)
    torch.testing.assert_close(slope, derivative)
    assert set(slope.tolist()) == {-1.0, 1.0}
