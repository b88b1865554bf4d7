"""Training losses and metrics: reprojection error of trajectories in pixels, reblur error, PSNR.

Pure functions of tensors; per-sample values `(B,)` so callers can average, weight or report them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models import pmbm
from models.shake import probe_points, project_points


def reblur(image: Tensor, trajectory: Tensor, camera: Tensor) -> Tensor:
    """The PMBM blur of `image (B, 3, H, W)` under trajectories `(B, P, 3)` and intrinsics `(B, 3, 3)`."""
    return pmbm.blur(image, pmbm.blur_grids(trajectory, camera, image.shape[-2], image.shape[-1]))


def reprojection_error_px(estimate: Tensor, truth: Tensor, camera: Tensor, height: int, width: int) -> Tensor:
    """Mean distance `(B,)` in pixels between where pose i of each trajectory carries the probe points
    (corners, edge midpoints, centre), pose by pose in the given order."""
    points = probe_points(height, width)
    difference = project_points(estimate, camera, points) - project_points(truth, camera, points)
    # sqrt with a floor: the gradient of a norm at exactly zero is NaN.
    return torch.sqrt((difference * difference).sum(dim=-1) + 1e-12).mean(dim=(1, 2))


def direction_invariant_error_px(estimate: Tensor, truth: Tensor, camera: Tensor, height: int, width: int) -> Tensor:
    """`reprojection_error_px` of the estimate or of its reverse, whichever is smaller: a blurry image does
    not tell the direction of time."""
    forward = reprojection_error_px(estimate, truth, camera, height, width)
    backward = reprojection_error_px(estimate.flip(1), truth, camera, height, width)
    return torch.minimum(forward, backward)


def reblur_l1(sharp: Tensor, blurry: Tensor, trajectory: Tensor, camera: Tensor) -> Tensor:
    """Mean absolute difference `(B,)` between the sharp image blurred by `trajectory` and the blurry image."""
    return (reblur(sharp, trajectory, camera) - blurry).abs().mean(dim=(1, 2, 3))


def psnr(estimate: Tensor, reference: Tensor) -> Tensor:
    """PSNR `(B,)` in dB for images in [0, 1]."""
    mse = ((estimate.clamp(0, 1) - reference) ** 2).mean(dim=(1, 2, 3))
    return -10 * torch.log10(mse.clamp(min=1e-12))
