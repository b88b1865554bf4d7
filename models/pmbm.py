"""Projective Motion Blur Model: blur, the reference's approximate adjoint, and per-pose sharp frames.

All three are one batched `grid_sample` (bilinear, align_corners=True) over a grid that stacks the P poses along
the height axis, so the image is never copied P times and the graph holds one GridSample node. The reference's
reflection padding is applied to the positions when the grids are built (`geometry.reflect_positions`), so the
warps sample in range with zeros padding, the fast mode (the same values up to float rounding). Grids depend
only on the trajectory, the camera and the image size: compute them once with `blur_grids` and reuse them for
every blur call of a restoration.
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor

from models.geometry import normalized_grid, pixel_coordinates, reflect_positions, sampling_positions


class BlurGrids(NamedTuple):
    """Sampling grids `(B, P*H, W, 2)` of the blur operator and of its approximate adjoint."""

    forward: Tensor
    adjoint: Tensor


def _grids_from_positions(mapped_x: Tensor, mapped_y: Tensor) -> BlurGrids:
    """Forward samples at `q`; the reference's adjoint samples at the mirrored position `2p - q`. Both are
    reflected into the image."""
    height, width = mapped_x.shape[-2], mapped_x.shape[-1]
    x, y = pixel_coordinates(height, width, mapped_x)
    return BlurGrids(
        forward=_reflected_grid(mapped_x, mapped_y),
        adjoint=_reflected_grid(2 * x - mapped_x, 2 * y - mapped_y),
    )


def _reflected_grid(mapped_x: Tensor, mapped_y: Tensor) -> Tensor:
    height, width = mapped_x.shape[-2], mapped_x.shape[-1]
    return normalized_grid(reflect_positions(mapped_x, width)[0], reflect_positions(mapped_y, height)[0])


def blur_grids(trajectory: Tensor, camera: Tensor, height: int, width: int) -> BlurGrids:
    """Grids of the blur operator for trajectories `(B, P, 3)` and intrinsics `(B, 3, 3)`."""
    return _grids_from_positions(*sampling_positions(trajectory, camera, height, width))


def grids_from_displacement(displacement: Tensor) -> BlurGrids:
    """Grids from the reference's displacement fields `(B, P, 2, H, W)` in `(dy, dx)` pixels."""
    x, y = pixel_coordinates(displacement.shape[-2], displacement.shape[-1], displacement)
    return _grids_from_positions(x + displacement[:, :, 1], y + displacement[:, :, 0])


def warp_poses(image: Tensor, grid: Tensor) -> Tensor:
    """Warp `image (B, C, H, W)` by every pose of `grid (B, P*H, W, 2)` in one call: `(B, C, P, H, W)`.

    The grid must hold in-range (reflected) positions, as `blur_grids` makes them.
    """
    batch, channels, height, width = image.shape
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return warped.reshape(batch, channels, -1, height, width)


def blur(image: Tensor, grids: BlurGrids) -> Tensor:
    """The PMBM forward operator: the mean over poses of the warped sharp image."""
    return warp_poses(image, grids.forward).mean(dim=2)


def adjoint_blur(image: Tensor, grids: BlurGrids) -> Tensor:
    """The reference's approximate adjoint (displacements negated), which its restoration weights expect."""
    return warp_poses(image, grids.adjoint).mean(dim=2)


def sharp_frames(image: Tensor, grids: BlurGrids) -> Tensor:
    """The sequence of sharp frames `(B, P, C, H, W)`: frame i is the image under pose i. Their mean is `blur`."""
    return warp_poses(image, grids.forward).transpose(1, 2)
