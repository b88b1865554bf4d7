"""Pinhole camera geometry for rotational camera shake: intrinsics, rotations, homographies, sampling grids.

Everything is batched over images and poses and written with elementwise tensor ops, so it exports to ONNX
as plain arithmetic: no matrix inverse (ONNX has none), no Python loop over poses.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The reference's epsilon in the Rodrigues axis `theta / (|theta| + eps)`; kept for parity.
RODRIGUES_EPS = 1e-6


def default_focal_length(height: int, width: int) -> float:
    """The reference's focal length when none is given: the longer image side, in pixels."""
    return float(max(height, width))


def intrinsics(
    height: int,
    width: int,
    focal_length_px: float | Tensor | None = None,
    principal_point: tuple[float, float] | None = None,
    batch: int = 1,
) -> Tensor:
    """Camera matrices `(B, 3, 3)`: `[[f, 0, cx], [0, f, cy], [0, 0, 1]]`.

    Defaults follow the reference: `f = max(H, W)`, principal point `(W/2, H/2)`. `focal_length_px` may be a
    number or a `(B,)` tensor (one focal length per image).
    """
    if focal_length_px is None:
        focal_length_px = default_focal_length(height, width)
    focal = torch.as_tensor(focal_length_px, dtype=torch.float32).reshape(-1)
    if focal.numel() == 1:
        focal = focal.expand(batch)
    cx, cy = principal_point if principal_point is not None else (width / 2, height / 2)
    camera = torch.zeros(focal.shape[0], 3, 3, dtype=torch.float32)
    camera[:, 0, 0] = focal
    camera[:, 1, 1] = focal
    camera[:, 0, 2] = cx
    camera[:, 1, 2] = cy
    camera[:, 2, 2] = 1.0
    return camera


def intrinsics_inverse(camera: Tensor) -> Tensor:
    """Analytic inverse of zero-skew intrinsics `(..., 3, 3)`: `[[1/fx, 0, -cx/fx], [0, 1/fy, -cy/fy], [0, 0, 1]]`."""
    fx, fy = camera[..., 0, 0], camera[..., 1, 1]
    cx, cy = camera[..., 0, 2], camera[..., 1, 2]
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [
        torch.stack([1 / fx, zero, -cx / fx], dim=-1),
        torch.stack([zero, 1 / fy, -cy / fy], dim=-1),
        torch.stack([zero, zero, one], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


def rotation_matrices(rotation_vectors: Tensor) -> Tensor:
    """Rodrigues' formula: rotation vectors `(..., 3)` (pitch, yaw, roll in radians) -> matrices `(..., 3, 3)`.

    The axis is `theta / (|theta| + 1e-6)` as in the reference. The norm is floored at 1e-20 (squared) so a
    zero rotation has a finite gradient; the floor is far below the epsilon and changes no output.
    """
    squared = (rotation_vectors * rotation_vectors).sum(dim=-1, keepdim=True)
    angle = torch.sqrt(torch.clamp(squared, min=1e-20))
    axis = rotation_vectors / (angle + RODRIGUES_EPS)
    ax, ay, az = axis.unbind(dim=-1)
    zero = torch.zeros_like(ax)
    cross = torch.stack(
        [
            torch.stack([zero, -az, ay], dim=-1),
            torch.stack([az, zero, -ax], dim=-1),
            torch.stack([-ay, ax, zero], dim=-1),
        ],
        dim=-2,
    )
    sin = torch.sin(angle)[..., None]
    one_minus_cos = (1 - torch.cos(angle))[..., None]
    identity = torch.eye(3, dtype=rotation_vectors.dtype, device=rotation_vectors.device)
    return identity + sin * cross + one_minus_cos * (cross @ cross)


def homographies(trajectory: Tensor, camera: Tensor) -> Tensor:
    """Homographies `K R_i K^-1` `(B, P, 3, 3)` that carry a sharp-image pixel to its place under pose i."""
    camera = camera[:, None]
    return camera @ rotation_matrices(trajectory) @ intrinsics_inverse(camera)


def inverse_homographies(trajectory: Tensor, camera: Tensor) -> Tensor:
    """Analytic inverses `K R_i^T K^-1` `(B, P, 3, 3)` of `homographies`: no matrix inverse is computed."""
    camera = camera[:, None]
    return camera @ rotation_matrices(trajectory).transpose(-1, -2) @ intrinsics_inverse(camera)


def pixel_coordinates(height: int, width: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates `x (1, 1, 1, W)` and `y (1, 1, H, 1)` in the dtype and device of `like`."""
    x = torch.arange(width, dtype=like.dtype, device=like.device).reshape(1, 1, 1, width)
    y = torch.arange(height, dtype=like.dtype, device=like.device).reshape(1, 1, height, 1)
    return x, y


def sampling_positions(trajectory: Tensor, camera: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Where pose i samples the sharp image for each output pixel: `dehom(K R_i^T K^-1 p)`.

    Returns pixel coordinates `(x, y)`, each `(B, P, H, W)`.
    """
    inverse = inverse_homographies(trajectory, camera)[..., None, None]  # (B, P, 3, 3, 1, 1)
    x, y = pixel_coordinates(height, width, trajectory)
    mapped_x = inverse[:, :, 0, 0] * x + inverse[:, :, 0, 1] * y + inverse[:, :, 0, 2]
    mapped_y = inverse[:, :, 1, 0] * x + inverse[:, :, 1, 1] * y + inverse[:, :, 1, 2]
    mapped_w = inverse[:, :, 2, 0] * x + inverse[:, :, 2, 1] * y + inverse[:, :, 2, 2]
    return mapped_x / mapped_w, mapped_y / mapped_w


def displacement_field(trajectory: Tensor, camera: Tensor, height: int, width: int) -> Tensor:
    """Per-pose displacement `(B, P, 2, H, W)` as `(dy, dx)` in pixels: the reference's `offsets` convention."""
    mapped_x, mapped_y = sampling_positions(trajectory, camera, height, width)
    x, y = pixel_coordinates(height, width, trajectory)
    return torch.stack([mapped_y - y, mapped_x - x], dim=2)


def reflect_positions(position: Tensor, size: int | Tensor) -> tuple[Tensor, Tensor]:
    """Pixel positions along an axis of `size` pixels, reflected into `[0, size-1]` as `grid_sample`'s reflection
    padding does with align_corners=True (any number of bounces), and the slope (+-1) of that map.

    Reflecting the positions once, where the grid is built, lets every warp sample in range with the cheap padding
    modes: onnxruntime's CPU GridSample runs about twice as fast with zeros padding as with reflection.
    """
    last = size - 1
    distance = position.abs()
    wrapped = distance - (2 * last) * torch.floor(distance / (2 * last))  # in [0, 2 last): one period
    reflected = last - (last - wrapped).abs()
    one = torch.ones_like(position)
    slope = torch.where(position < 0, -one, one) * torch.where(wrapped > last, -one, one)
    return reflected, slope


def normalized_grid(mapped_x: Tensor, mapped_y: Tensor) -> Tensor:
    """Pixel positions `(B, P, H, W)` -> one `grid_sample` grid `(B, P*H, W, 2)` (align_corners=True)."""
    batch, poses, height, width = mapped_x.shape
    grid_x = mapped_x * (2 / (width - 1)) - 1
    grid_y = mapped_y * (2 / (height - 1)) - 1
    return torch.stack([grid_x, grid_y], dim=-1).reshape(batch, poses * height, width, 2)
