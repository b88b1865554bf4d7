"""Camera shake: a hand-shake simulator and image-consistent trajectory transforms (trajectory files are read by
`runtime.core.motion`).

A trajectory is `(P, 3)` rotation vectors in radians, (pitch, yaw, roll) = rotation about the camera's x (right),
y (down) and z (forward) axes, as `models.geometry.rotation_matrices` reads them, in time order, mean-centred.

The simulator treats each axis's angular velocity as a damped oscillator driven by white noise (a second-order
random walk: smooth, with inertia), started in its stationary state, plus a constant drift; it integrates the
velocity over a sampled exposure time and samples 25 poses. Roll gets a smaller share. Finally the whole
trajectory is scaled so that its blur, measured in pixels through `models.geometry`, equals a sampled target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from models.geometry import homographies, intrinsics

N_POSES = 25


@dataclass(frozen=True)
class ShakeConfig:
    """Ranges the hand-shake model samples from (uniform unless said otherwise)."""

    exposure_s: tuple[float, float] = (0.02, 0.5)  # log-uniform
    frequency_hz: tuple[float, float] = (1.0, 12.0)  # natural frequency of the angular-velocity oscillator, log-uniform
    damping: tuple[float, float] = (0.2, 1.0)
    roll_share: tuple[float, float] = (0.1, 0.8)  # roll amplitude relative to pitch/yaw
    drift: float = 0.5  # std of the constant drift velocity, relative to the oscillation's std
    substeps: int = 8  # integration steps between two poses


# --- measuring a trajectory in pixels ---------------------------------------------------------------------------


def probe_points(height: int, width: int) -> Tensor:
    """Nine pixel positions `(9, 2)` as (x, y): the corners, the edge midpoints and the centre."""
    xs = torch.tensor([0.0, (width - 1) / 2, width - 1.0])
    ys = torch.tensor([0.0, (height - 1) / 2, height - 1.0])
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1)


def project_points(trajectory: Tensor, camera: Tensor, points: Tensor) -> Tensor:
    """Where each pose `(B, P, 3)` carries the sharp-image points `(N, 2)`: `dehom(K R_i K^-1 p)`, `(B, P, N, 2)`."""
    homography = homographies(trajectory, camera)  # (B, P, 3, 3)
    points = points.to(trajectory.dtype)
    homogeneous = torch.cat([points, torch.ones_like(points[:, :1])], dim=-1)  # (N, 3)
    mapped = torch.einsum("bpij,nj->bpni", homography, homogeneous)
    return mapped[..., :2] / mapped[..., 2:]


def blur_extent_px(trajectory: Tensor, camera: Tensor, height: int, width: int) -> Tensor:
    """Blur length `(B,)` in pixels: over the probe points, the largest distance between two poses' images."""
    projected = project_points(trajectory, camera, probe_points(height, width))  # (B, P, N, 2)
    spans = (projected[:, :, None] - projected[:, None]).norm(dim=-1)  # (B, P, P, N)
    return spans.flatten(1).amax(dim=1)


def scale_to_extent(
    trajectory: np.ndarray, target_px: float, focal_length: float, height: int, width: int, rounds: int = 5
) -> np.ndarray:
    """The trajectory scaled (about its mean) so that its blur extent is `target_px` pixels.

    Displacement is nearly linear in the angles for small rotations, so a few rescaling rounds converge.
    """
    camera = intrinsics(height, width, focal_length).double()
    scaled = trajectory - trajectory.mean(axis=0)
    for _ in range(rounds):
        extent = float(blur_extent_px(torch.from_numpy(scaled)[None], camera, height, width)[0])
        if extent < 1e-9:
            raise ValueError("cannot scale a trajectory without motion")
        scaled = scaled * (target_px / extent)
    return scaled


# --- the hand-shake simulator -----------------------------------------------------------------------------------


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def shake_angles(rng: np.random.Generator, config: ShakeConfig = ShakeConfig(), n_poses: int = N_POSES) -> np.ndarray:
    """Unscaled hand-shake rotations `(n_poses, 3)` over one sampled exposure, mean-centred.

    Per axis, angular velocity `w` follows `w'' = -2 z f0 w' - f0^2 w + noise` (damped oscillator driven by white
    noise; `f0`, `z` sampled), started from its stationary distribution, plus a constant drift. The angle is the
    integral of the velocity; poses are sampled at equal times over the exposure.
    """
    exposure = _log_uniform(rng, config.exposure_s)
    omega0 = 2 * math.pi * _log_uniform(rng, config.frequency_hz)
    damping = rng.uniform(*config.damping)
    amplitude = np.array([rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0), 0.0])
    amplitude[2] = rng.uniform(*config.roll_share) * amplitude[:2].mean()
    # Stationary state of the driven oscillator (unit noise): Var(w) = 1/(4 z f0^3), Var(w') = 1/(4 z f0).
    velocity_std = 1 / math.sqrt(4 * damping * omega0**3)
    velocity = rng.normal(0.0, velocity_std, 3)
    acceleration = rng.normal(0.0, 1 / math.sqrt(4 * damping * omega0), 3)
    drift = rng.normal(0.0, config.drift * velocity_std, 3)
    steps = (n_poses - 1) * config.substeps
    dt = exposure / steps
    angle = np.zeros(3)
    angles = [angle.copy()]
    for step in range(1, steps + 1):
        # Semi-implicit Euler: stable for f0 * dt well below 1 (here at most ~0.2).
        acceleration += (-2 * damping * omega0 * acceleration - omega0**2 * velocity) * dt
        acceleration += rng.normal(0.0, math.sqrt(dt), 3)
        velocity = velocity + acceleration * dt
        angle = angle + (velocity + drift) * dt
        if step % config.substeps == 0:
            angles.append(angle.copy())
    trajectory = np.asarray(angles) * amplitude
    return trajectory - trajectory.mean(axis=0)


def random_trajectory(
    rng: np.random.Generator,
    target_px: float,
    focal_length: float,
    height: int,
    width: int,
    config: ShakeConfig = ShakeConfig(),
) -> np.ndarray:
    """A hand-shake trajectory `(25, 3)` rad whose blur extent at this camera is `target_px` pixels."""
    return scale_to_extent(shake_angles(rng, config), target_px, focal_length, height, width)


# --- trajectory transforms that go with image flips and rotations -----------------------------------------------
# Derivation (centred pixel coordinates, K = diag(f, f, 1) there): an image transform p -> M p with M acting on
# camera rays turns the blur by R_i into the blur by M^T R_i M. For a proper rotation M this is the rotation
# vector M^T w; for a reflection (det -1) it is -M^T w. Hence, with w = (pitch, yaw, roll):
#   horizontal flip, M = diag(-1, 1, 1):  (pitch, -yaw, -roll)
#   vertical flip,   M = diag(1, -1, 1):  (-pitch, yaw, -roll)
#   np.rot90(image, 1) (out[i, j] = in[j, W-1-i]), M = [[0,-1,0],[1,0,0],[0,0,1]]:  (yaw, -pitch, roll)
# tests/models/test_shake.py checks each against blurring the transformed image.


def flip_trajectory(trajectory: np.ndarray, horizontal: bool = False, vertical: bool = False) -> np.ndarray:
    """The trajectory that blurs the flipped image as the original blurs the original (then flipped)."""
    sign = np.ones(3)
    if horizontal:
        sign *= (1.0, -1.0, -1.0)
    if vertical:
        sign *= (-1.0, 1.0, -1.0)
    return trajectory * sign


def rotate_trajectory90(trajectory: np.ndarray, k: int) -> np.ndarray:
    """The trajectory that goes with `np.rot90(image, k, axes=(0, 1))` (counter-clockwise quarter turns)."""
    rotated = trajectory
    for _ in range(k % 4):
        rotated = np.stack([rotated[..., 1], -rotated[..., 0], rotated[..., 2]], axis=-1)
    return rotated
