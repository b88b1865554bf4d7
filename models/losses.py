"""Training losses and metrics: order-invariant trajectory error in pixels, path-order error, reblur error, PSNR.

Pure functions of tensors; per-sample values `(B,)` so callers can average, weight or report them.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from models import pmbm
from models.shake import probe_points, project_points
from models.trajectory import order_poses


def reblur(image: Tensor, trajectory: Tensor, camera: Tensor) -> Tensor:
    """The PMBM blur of `image (B, 3, H, W)` under trajectories `(B, P, 3)` and intrinsics `(B, 3, 3)`."""
    return pmbm.blur(image, pmbm.blur_grids(trajectory, camera, image.shape[-2], image.shape[-1]))


def pose_distances_px(estimate: Tensor, truth: Tensor, camera: Tensor, height: int, width: int) -> Tensor:
    """Mean distance `(B, P, Q)` in pixels between where estimated pose i and true pose j carry the probe points
    (corners, edge midpoints, centre)."""
    points = probe_points(height, width)
    mapped_estimate = project_points(estimate, camera, points)  # (B, P, N, 2)
    mapped_truth = project_points(truth, camera, points)  # (B, Q, N, 2)
    difference = mapped_estimate[:, :, None] - mapped_truth[:, None]
    # sqrt with a floor: the gradient of a norm at exactly zero is NaN.
    return torch.sqrt((difference * difference).sum(dim=-1) + 1e-12).mean(dim=-1)


def matched_error_px(estimate: Tensor, truth: Tensor, camera: Tensor, height: int, width: int) -> Tensor:
    """Order-invariant trajectory error `(B,)` in pixels: mean pose distance over the one-to-one matching of
    estimated to true poses that makes it least (Hungarian assignment, as `runtime.tools.metrics.trajectory_error`).

    A blurry image is the sum of its poses' views, so it tells the set of poses, not their time order; the
    matching is chosen without gradient and the matched distances carry it.
    """
    distances = pose_distances_px(estimate, truth, camera, height, width)
    costs = distances.detach().cpu().double().numpy()
    matched = []
    for sample, cost in enumerate(costs):
        rows, columns = linear_sum_assignment(cost)
        matched.append(distances[sample, torch.from_numpy(rows), torch.from_numpy(columns)].mean())
    return torch.stack(matched)


def ordered_error_px(estimate: Tensor, truth: Tensor, camera: Tensor, height: int, width: int) -> Tensor:
    """Path-order error `(B,)` in pixels: mean distance between the i-th estimated and the i-th true pose when
    both are put in the reference's pose order (`order_poses`, as the runtime does), the better of the two
    directions.

    It is never below the matched error, and equals it when the estimated poses lie along a path in the same
    order as the true ones; the excess measures how far the runtime's frame sequence and kernel drawing would
    jump back and forth. The ordering is chosen without gradient; the distances carry it.
    """
    distances = pose_distances_px(order_poses(estimate), order_poses(truth), camera, height, width)
    forward = distances.diagonal(dim1=1, dim2=2).mean(dim=-1)
    backward = distances.flip(dims=(2,)).diagonal(dim1=1, dim2=2).mean(dim=-1)
    return torch.minimum(forward, backward)


def reblur_l1(sharp: Tensor, blurry: Tensor, trajectory: Tensor, camera: Tensor) -> Tensor:
    """Mean absolute difference `(B,)` between the sharp image blurred by `trajectory` and the blurry image."""
    return (reblur(sharp, trajectory, camera) - blurry).abs().mean(dim=(1, 2, 3))


def psnr(estimate: Tensor, reference: Tensor) -> Tensor:
    """PSNR `(B,)` in dB for images in [0, 1]."""
    mse = ((estimate.clamp(0, 1) - reference) ** 2).mean(dim=(1, 2, 3))
    return -10 * torch.log10(mse.clamp(min=1e-12))
