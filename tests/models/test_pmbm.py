import numpy as np
import torch
import torch.nn.functional as F

from models import geometry, pmbm
from tests.models.conftest import arc_trajectory


def grids_for(trajectory: torch.Tensor, height: int, width: int, focal: float | None = None) -> pmbm.BlurGrids:
    camera = geometry.intrinsics(height, width, focal_length_px=focal, batch=trajectory.shape[0]).to(trajectory.dtype)
    return pmbm.blur_grids(trajectory, camera, height, width)


def reflect(coordinate: np.ndarray, size: int) -> np.ndarray:
    """grid_sample's reflection padding with align_corners=True: mirror about the edge pixel centres."""
    span = size - 1
    folded = np.abs(coordinate) % (2 * span)
    return np.where(folded > span, 2 * span - folded, folded)


def sampling_matrix(mapped_x: np.ndarray, mapped_y: np.ndarray) -> np.ndarray:
    """Dense matrix of mean-over-poses bilinear sampling at positions `(P, H, W)`, built without torch."""
    poses, height, width = mapped_x.shape
    matrix = np.zeros((height * width, height * width))
    for pose in range(poses):
        for row in range(height):
            for col in range(width):
                x, y = reflect(mapped_x[pose, row, col], width), reflect(mapped_y[pose, row, col], height)
                x0, y0 = int(np.floor(x)), int(np.floor(y))
                for xi, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                    for yi, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                        if xi < width and yi < height and wx * wy > 0:
                            matrix[row * width + col, yi * width + xi] += wx * wy / poses
    return matrix


def test_zero_trajectory_is_the_identity():
    image = torch.rand(2, 3, 17, 23)
    grids = grids_for(torch.zeros(2, 25, 3), 17, 23)
    assert torch.allclose(pmbm.blur(image, grids), image, atol=1e-5)
    assert torch.allclose(pmbm.adjoint_blur(image, grids), image, atol=1e-5)
    assert torch.allclose(pmbm.sharp_frames(image, grids), image[:, None].expand(-1, 25, -1, -1, -1), atol=1e-5)


def test_mean_of_frames_is_the_blur():
    image = torch.rand(1, 3, 40, 30)
    grids = grids_for(arc_trajectory(), 40, 30)
    frames = pmbm.sharp_frames(image, grids)
    assert frames.shape == (1, 25, 3, 40, 30)
    assert torch.allclose(frames.mean(dim=1), pmbm.blur(image, grids), atol=1e-6)


def test_all_poses_go_through_one_grid_sample_call(monkeypatch):
    calls = []
    original = F.grid_sample

    def counting(*args, **kwargs):
        calls.append(args[1].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(F, "grid_sample", counting)
    pmbm.blur(torch.rand(2, 3, 16, 16), grids_for(torch.zeros(2, 25, 3), 16, 16))
    assert calls == [torch.Size([2, 25 * 16, 16, 2])]


def test_forward_and_adjoint_against_a_dense_matrix():
    """The blur equals an independently built bilinear/reflection matrix A, and the adjoint equals the matrix of
    the mirrored positions. That adjoint (the reference's, displacement negated) is not exactly A^T: on this
    12x14 image with up to 1.9 px of displacement the relative Frobenius gap is 0.041 on pixels at least 3 px
    from the border and 0.41 over the whole image, where reflection at the border dominates (measured)."""
    height, width, margin = 12, 14, 3
    trajectory = arc_trajectory(extent=0.1).double()
    grids = grids_for(trajectory, height, width, focal=14.0)
    camera = geometry.intrinsics(height, width, 14.0).double()
    mapped_x, mapped_y = (
        positions[0].numpy() for positions in geometry.sampling_positions(trajectory, camera, height, width)
    )
    forward = sampling_matrix(mapped_x, mapped_y)
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    mirrored = sampling_matrix(2 * x - mapped_x, 2 * y - mapped_y)

    image = torch.rand(1, 1, height, width, dtype=torch.float64)
    flat = image.reshape(-1).numpy()
    assert np.abs(pmbm.blur(image, grids).reshape(-1).numpy() - forward @ flat).max() <= 1e-10
    assert np.abs(pmbm.adjoint_blur(image, grids).reshape(-1).numpy() - mirrored @ flat).max() <= 1e-10

    inner = ((x >= margin) & (x < width - margin) & (y >= margin) & (y < height - margin)).reshape(-1)
    block = np.ix_(inner, inner)
    interior_gap = np.linalg.norm((mirrored - forward.T)[block]) / np.linalg.norm(forward.T[block])
    assert interior_gap <= 0.06
    assert np.linalg.norm(mirrored - forward.T) / np.linalg.norm(forward.T) <= 0.5


def test_gradients_reach_the_image_and_the_trajectory():
    image = torch.rand(1, 3, 24, 24, requires_grad=True)
    for trajectory in (arc_trajectory().requires_grad_(), torch.zeros(1, 25, 3, requires_grad=True)):
        grids = grids_for(trajectory, 24, 24)
        target = torch.rand(1, 3, 24, 24)
        loss = ((pmbm.blur(image, grids) - target) ** 2).sum() + pmbm.adjoint_blur(image, grids).square().sum()
        image.grad = None
        loss.backward()
        assert torch.isfinite(trajectory.grad).all() and trajectory.grad.abs().sum() > 0
        assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_grids_from_the_authors_displacement_equal_ours(case_b):
    ours = grids_for(torch.from_numpy(case_b["trajectory"]), 120, 88)
    theirs = pmbm.grids_from_displacement(torch.from_numpy(case_b["offsets"]))
    assert (ours.forward - theirs.forward).abs().max() <= 1e-5
    assert (ours.adjoint - theirs.adjoint).abs().max() <= 1e-5


def test_blur_matches_the_authors_away_from_the_border(case_b):
    """The reference leaks zeros where a displacement runs past its padding (bottom-right, up to 18 px in):
    compare at least 20 px from every edge. Tolerance 1e-5; measured 1.5e-6."""
    blurred = pmbm.blur(torch.from_numpy(case_b["sharp"]), grids_for(torch.from_numpy(case_b["trajectory"]), 120, 88))
    error = np.abs(blurred.numpy() - case_b["blurred"])[..., 20:-20, 20:-20]
    assert error.max() <= 1e-5


def test_adjoint_matches_the_authors_everywhere(case_b):
    """Tolerance 1e-5; measured 2.3e-6."""
    grids = grids_for(torch.from_numpy(case_b["trajectory"]), 120, 88)
    adjoint = pmbm.adjoint_blur(torch.from_numpy(case_b["sharp"]), grids)
    assert np.abs(adjoint.numpy() - case_b["adjoint"]).max() <= 1e-5


def test_mean_of_the_authors_frames_matches_our_blur_in_the_interior(case_b):
    """Informative: the reference's frames use a slightly different normalisation, so only their mean is
    compared, loosely (measured 0.01 interior max abs)."""
    grids = grids_for(torch.from_numpy(case_b["trajectory"]), 120, 88)
    ours = pmbm.blur(torch.from_numpy(case_b["sharp"]), grids)[0].numpy()
    assert np.abs(ours - case_b["frames"].mean(axis=0))[..., 20:-20, 20:-20].max() <= 0.05
