"""Pinhole camera geometry for rotational shake, in numpy: the runtime's copy of `models/geometry.py`.

The runtime must not import torch, yet drawing blur kernels and restoring in tiles needs the same camera
model as the networks. Every function here matches its namesake in `models.geometry` (same defaults, same
Rodrigues epsilon, the same analytic `K^-1`); `tests/runtime/test_camera.py` checks the two agree.

Conventions: a trajectory is `(P, 3)` rotation vectors (pitch, yaw, roll) in radians; a camera is a `(3, 3)`
zero-skew intrinsic matrix; points are `(x, y)` pixel coordinates (x right, y down, pixel centres at integers).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from runtime.core.limits import FOCAL_LENGTH_PX

#: The reference's epsilon in the Rodrigues axis `theta / (|theta| + eps)`; kept for parity with the nets.
RODRIGUES_EPS = 1e-6

FloatArray = npt.NDArray[np.float64]


def intrinsics(
    height: int,
    width: int,
    focal_length_px: float | None = None,
    principal_point: tuple[float, float] | None = None,
) -> FloatArray:
    """The camera matrix `[[f, 0, cx], [0, f, cy], [0, 0, 1]]` `(3, 3)` float64.

    Defaults follow the reference: `f = max(H, W)` pixels, principal point `(W/2, H/2)`. A focal length given must
    lie within `FOCAL_LENGTH_PX` (LimitError): one outside blurs by absurd extents (1e30 px moves points by
    1e28 px), or NaN, far from its cause.
    """
    if focal_length_px is None:
        focal = float(max(height, width))
    else:
        focal = FOCAL_LENGTH_PX.check(focal_length_px, "camera intrinsics")
    cx, cy = principal_point if principal_point is not None else (width / 2, height / 2)
    return np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


#: The diagonal of the 36 x 24 mm film frame that 35 mm-equivalent focal lengths refer to (CIPA DC-008).
FILM_DIAGONAL_MM = float(np.hypot(36.0, 24.0))


def focal_length_from_35mm(focal_length_35mm: float, height: int, width: int) -> float:
    """Pixels of focal length for an image whose camera records a 35 mm-equivalent focal length (mm): the same
    field of view across the diagonal as on a 36 x 24 mm frame."""
    return float(focal_length_35mm * np.hypot(height, width) / FILM_DIAGONAL_MM)


def tile_intrinsics(camera: npt.ArrayLike, x0: float, y0: float) -> FloatArray:
    """The intrinsics of a crop whose top-left pixel is `(x0, y0)` in the full image.

    Only the principal point moves (by minus the offset), so the homographies of a tile are exactly those of
    the full image seen in tile coordinates: tiled restoration stays projectively exact, unlike giving each
    tile its own centred default camera.
    """
    tile = np.array(camera, dtype=np.float64, copy=True)
    tile[0, 2] -= x0
    tile[1, 2] -= y0
    return tile


def scale_intrinsics(camera: npt.ArrayLike, factor: float) -> FloatArray:
    """The intrinsics of the image resized by `factor`: focal length and principal point scale with it.

    Points scale the same way (`p' = factor * p`), so the homographies of the resized image carry `p'` exactly
    where those of the original carry `p`, times `factor`.
    """
    scaled = np.array(camera, dtype=np.float64, copy=True)
    scaled[:2] *= factor
    return scaled


def intrinsics_inverse(camera: npt.ArrayLike) -> FloatArray:
    """Analytic inverse of zero-skew intrinsics: `[[1/fx, 0, -cx/fx], [0, 1/fy, -cy/fy], [0, 0, 1]]`."""
    k = np.asarray(camera, dtype=np.float64)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    return np.array([[1 / fx, 0.0, -cx / fx], [0.0, 1 / fy, -cy / fy], [0.0, 0.0, 1.0]], dtype=np.float64)


def rotation_matrices(trajectory: npt.ArrayLike) -> FloatArray:
    """Rodrigues' formula: rotation vectors `(..., 3)` in radians -> rotation matrices `(..., 3, 3)`.

    The axis is `theta / (|theta| + 1e-6)` as in the reference (so a zero rotation gives the identity), and the
    norm is floored at 1e-10 exactly like `models.geometry`.
    """
    theta = np.asarray(trajectory, dtype=np.float64)
    angle = np.sqrt(np.maximum((theta * theta).sum(axis=-1, keepdims=True), 1e-20))
    axis = theta / (angle + RODRIGUES_EPS)
    ax, ay, az = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(ax)
    cross = np.stack(
        [
            np.stack([zero, -az, ay], axis=-1),
            np.stack([az, zero, -ax], axis=-1),
            np.stack([-ay, ax, zero], axis=-1),
        ],
        axis=-2,
    )
    sin = np.sin(angle)[..., None]
    one_minus_cos = (1 - np.cos(angle))[..., None]
    return np.eye(3) + sin * cross + one_minus_cos * (cross @ cross)


def homographies(trajectory: npt.ArrayLike, camera: npt.ArrayLike) -> FloatArray:
    """Homographies `K R_i K^-1` `(P, 3, 3)` carrying a sharp-image pixel to its place under pose i."""
    k = np.asarray(camera, dtype=np.float64)
    return k @ rotation_matrices(trajectory) @ intrinsics_inverse(k)


def point_paths(trajectory: npt.ArrayLike, camera: npt.ArrayLike, points: npt.ArrayLike) -> FloatArray:
    """Where each image point goes under each pose: `dehom(H_i p)`, shape `(P, N, 2)` for points `(N, 2)` xy px.

    The blur model is: the blurry pixel at `p` is the mean over poses of the sharp image at `H_i^-1 p`
    (`models.geometry.sampling_positions`). Equivalently, a sharp point at `p` is smeared over the positions
    `H_i p`: this path, taken relative to `p`, is the local blur kernel (point-spread function) at `p`.
    """
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    homogeneous = np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1)  # (N, 3)
    mapped = np.einsum("pij,nj->pni", homographies(trajectory, camera), homogeneous)  # (P, N, 3)
    return mapped[..., :2] / mapped[..., 2:]
