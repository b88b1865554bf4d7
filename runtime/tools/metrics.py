"""Quality measures for evaluation: PSNR, SSIM and the order-invariant camera-trajectory error. Torch-free.

Images are float arrays in [0, 1] (data range 1), HxW or HxWxC. SSIM is the Gaussian-window form of Wang et al.
(2004): an 11x11 window of sigma 1.5, K1 = 0.01, K2 = 0.03, computed on each RGB channel separately and averaged
over the channels (not on luminance), over the pixels whose window lies inside the image; it matches
`skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1, channel_axis=-1)`.

The trajectory error (DESIGN.md section 5) measures two trajectories by what they do to the image: the
displacement in pixels between where an estimated pose and a true pose carry the four image corners and the
centre (the principal point), averaged over those points. The network predicts a set of poses whose time order is
only recovered up to reversal, so poses are matched one-to-one by an optimal assignment (minimum total
displacement) before averaging: a permuted or reversed estimate of the true trajectory has zero error. The
zero-motion error (the all-zero trajectory, i.e. "no shake") is the baseline an estimate must beat.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from runtime.core.camera import intrinsics, point_paths

FloatArray = npt.NDArray[np.float64]

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def psnr(estimate: npt.ArrayLike, reference: npt.ArrayLike, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, `10 log10(range^2 / MSE)`; infinite for identical images."""
    x, y = _pair(estimate, reference)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def _gaussian_window() -> FloatArray:
    """The normalised 1-D Gaussian of the SSIM window (11 taps, sigma 1.5), applied separably."""
    offsets = np.arange(SSIM_WINDOW, dtype=np.float64) - (SSIM_WINDOW - 1) / 2
    weights = np.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return weights / weights.sum()


def ssim_map(estimate: npt.ArrayLike, reference: npt.ArrayLike, data_range: float = 1.0) -> FloatArray:
    """The SSIM index at every pixel whose 11x11 window lies inside the image: `(H-10, W-10[, C])` float64.

    Local means, variances and covariance are Gaussian-weighted (population form, as Wang et al.).
    """
    x, y = _pair(estimate, reference)
    if min(x.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {x.shape[:2]}")
    window = _gaussian_window()

    def local_mean(image: FloatArray) -> FloatArray:
        filtered = cv2.sepFilter2D(image, cv2.CV_64F, window, window, borderType=cv2.BORDER_REFLECT)
        return np.asarray(filtered, dtype=np.float64).reshape(image.shape)

    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mean_x, mean_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mean_x * mean_x
    var_y = local_mean(y * y) - mean_y * mean_y
    cov_xy = local_mean(x * y) - mean_x * mean_y
    index = ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)) / (
        (mean_x * mean_x + mean_y * mean_y + c1) * (var_x + var_y + c2)
    )
    pad = (SSIM_WINDOW - 1) // 2
    return index[pad:-pad, pad:-pad]


def ssim(estimate: npt.ArrayLike, reference: npt.ArrayLike, data_range: float = 1.0) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian window), averaged over the RGB channels; 1 for identical images."""
    return float(ssim_map(estimate, reference, data_range).mean())


def _pair(estimate: npt.ArrayLike, reference: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Two images as float64 arrays of one shape (HxW or HxWxC), or a ValueError saying how they differ."""
    x = np.asarray(estimate, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    if x.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {x.shape}")
    return x, y


# --- camera trajectories -----------------------------------------------------------------------------------------


def reference_points(height: int, width: int) -> FloatArray:
    """The points the trajectory error follows, `(5, 2)` xy px: the four corner pixels and the principal point."""
    right, bottom = width - 1.0, height - 1.0
    return np.array([[0.0, 0.0], [right, 0.0], [0.0, bottom], [right, bottom], [width / 2, height / 2]])


def pose_costs(
    estimate: npt.ArrayLike,
    truth: npt.ArrayLike,
    height: int,
    width: int,
    focal_length: float | None = None,
    points: npt.ArrayLike | None = None,
) -> FloatArray:
    """`(P, Q)` mean displacement in pixels between where estimated pose i and true pose j carry the points.

    The camera is the reference's (principal point at the image centre, `focal_length` px, default the longer
    side); `points` `(N, 2)` default to `reference_points(height, width)`.
    """
    camera = intrinsics(height, width, focal_length)
    where = reference_points(height, width) if points is None else np.asarray(points, dtype=np.float64)
    estimated = point_paths(_poses(estimate, "estimate"), camera, where)  # (P, N, 2)
    true = point_paths(_poses(truth, "truth"), camera, where)  # (Q, N, 2)
    gaps = estimated[:, None] - true[None]  # (P, Q, N, 2)
    return np.sqrt((gaps * gaps).sum(axis=-1)).mean(axis=-1)


def trajectory_error(
    estimate: npt.ArrayLike,
    truth: npt.ArrayLike,
    height: int,
    width: int,
    focal_length: float | None = None,
    points: npt.ArrayLike | None = None,
) -> float:
    """Order-invariant trajectory error in pixels: mean displacement over optimally matched pose pairs.

    `estimate` and `truth` are `(P, 3)` radians (pitch, yaw, roll) with the same number of poses; each estimated
    pose is matched to exactly one true pose so that the total displacement is least (Hungarian assignment).
    """
    costs = pose_costs(estimate, truth, height, width, focal_length, points)
    return float(costs[np.arange(len(costs)), _assignment(costs)].mean())


def matched_trajectory(
    estimate: npt.ArrayLike,
    truth: npt.ArrayLike,
    height: int,
    width: int,
    focal_length: float | None = None,
    points: npt.ArrayLike | None = None,
) -> FloatArray:
    """The estimated poses reordered so that pose i is the one `trajectory_error` matches to true pose i.

    With it, `truth + a * (matched - truth)` moves every true pose straight towards its estimate: the error then
    grows with `a` from 0 (the truth) to the estimate's error (a = 1).
    """
    poses = _poses(estimate, "estimate")
    matched = np.empty_like(poses)
    matched[_assignment(pose_costs(poses, truth, height, width, focal_length, points))] = poses
    return matched


def _assignment(costs: FloatArray) -> npt.NDArray[np.intp]:
    """For each estimated pose (row), the true pose (column) it is matched to: least total cost, one to one."""
    if costs.shape[0] != costs.shape[1]:
        raise ValueError(f"trajectories differ in length: {costs.shape[0]} vs {costs.shape[1]} poses")
    rows, columns = linear_sum_assignment(costs)
    assignment = np.empty(len(rows), dtype=np.intp)
    assignment[rows] = columns
    return assignment


def reference_order(trajectory: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """The reference's time order of poses (DESIGN.md section 2): from the pose farthest from all others (summed
    distance between rotation vectors), every pose by decreasing distance to it."""
    poses = _poses(trajectory, "trajectory")
    distances = np.sqrt(((poses[:, None] - poses[None]) ** 2).sum(axis=-1))
    extreme = int(distances.sum(axis=0).argmax())
    return np.argsort(-distances[extreme], kind="stable")


def path_order_error(
    estimate: npt.ArrayLike,
    truth: npt.ArrayLike,
    height: int,
    width: int,
    focal_length: float | None = None,
    points: npt.ArrayLike | None = None,
) -> float:
    """Trajectory error in time order: mean displacement between the i-th estimated and the i-th true pose, both
    in the reference's order (`reference_order`), the better of the two directions.

    Never below `trajectory_error`; equal to it when the estimated poses lie along a path in the true order. The
    excess is how far the frame sequence and the kernel drawing jump back and forth.
    """
    estimated, true = _poses(estimate, "estimate"), _poses(truth, "truth")
    if estimated.shape != true.shape:
        raise ValueError(f"trajectories differ in length: {estimated.shape[0]} vs {true.shape[0]} poses")
    ordered = pose_costs(
        estimated[reference_order(estimated)], true[reference_order(true)], height, width, focal_length, points
    )
    return float(min(np.diagonal(ordered).mean(), np.diagonal(ordered[:, ::-1]).mean()))


def zero_motion_error(
    truth: npt.ArrayLike,
    height: int,
    width: int,
    focal_length: float | None = None,
    points: npt.ArrayLike | None = None,
) -> float:
    """The trajectory error of "no shake" (every pose zero): the baseline a trajectory estimate must beat."""
    poses = _poses(truth, "truth")
    return trajectory_error(np.zeros_like(poses), poses, height, width, focal_length, points)


def _poses(trajectory: npt.ArrayLike, what: str) -> FloatArray:
    poses = np.asarray(trajectory, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 3 or poses.shape[0] == 0 or not np.isfinite(poses).all():
        raise ValueError(f"{what}: a trajectory must be Px3 finite radians (pitch, yaw, roll), got shape {poses.shape}")
    return poses
