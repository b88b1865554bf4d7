"""Lens distortion: frames turned into the pinhole camera the blur model assumes, by OpenCV's lens models.

The PMBM warps by homographies `K R K^-1`, which hold for a pinhole camera only. A lens that bends straight lines
(wide-angle and action cameras, fisheye lenses) blurs otherwise, and its frames' features do not move by a
homography either. Given the lens's calibration (OpenCV's `standard` model, k1 k2 p1 p2 [k3 ...], or its
`fisheye` model, k1..k4), each frame is resampled onto the pinhole camera of the same focal length with the
principal point at the centre (the runtime's camera, `runtime.core.camera.intrinsics`), restored there, and the
results stay in that geometry.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from runtime.core.camera import intrinsics

#: OpenCV's lens models, and how many distortion coefficients each takes.
MODEL_COEFFICIENTS = {"standard": (4, 5, 8, 12, 14), "fisheye": (4,)}
#: Images whose aspect differs from the calibration's by more than this are refused (a cropped sensor mode).
ASPECT_TOLERANCE = 0.01


@dataclass(frozen=True)
class Lens:
    """A lens calibrated at `width_px` x `height_px`: its focal lengths (x, y) and principal point there (pixels),
    and the distortion coefficients of its OpenCV `model`."""

    model: str
    coefficients: tuple[float, ...]
    focal_lengths_px: tuple[float, float]
    principal_point_px: tuple[float, float]
    width_px: int
    height_px: int

    def camera_matrix(self, height: int, width: int) -> np.ndarray:
        """The calibrated camera matrix scaled to an image of `height` x `width`, the whole calibrated frame
        resized. Raises ValueError for an image of another aspect."""
        if abs(width / height - self.width_px / self.height_px) > ASPECT_TOLERANCE * self.width_px / self.height_px:
            raise ValueError(
                f"the lens was calibrated at {self.width_px}x{self.height_px}; a {width}x{height} image has another "
                "aspect (a cropped mode needs a calibration of its own)"
            )
        scale = width / self.width_px
        (fx, fy), (cx, cy) = self.focal_lengths_px, self.principal_point_px
        return np.array([[fx * scale, 0.0, cx * scale], [0.0, fy * scale, cy * scale], [0.0, 0.0, 1.0]])


def make_lens(
    model: str,
    coefficients: Sequence[float],
    focal_lengths_px: tuple[float, float],
    principal_point_px: tuple[float, float],
    width_px: int,
    height_px: int,
) -> Lens:
    """A `Lens`, checked: a known model with as many finite coefficients as it takes, a positive frame and focal
    lengths. Raises ValueError saying what is wrong."""
    if model not in MODEL_COEFFICIENTS:
        raise ValueError(f"lens model must be one of {', '.join(MODEL_COEFFICIENTS)}, got {model!r}")
    values = tuple(float(value) for value in coefficients)
    if len(values) not in MODEL_COEFFICIENTS[model] or not all(map(math.isfinite, values)):
        counts = " or ".join(map(str, MODEL_COEFFICIENTS[model]))
        raise ValueError(f"a {model} lens takes {counts} finite distortion coefficients, got {list(values)}")
    if height_px <= 0 or width_px <= 0:
        raise ValueError("a lens needs the calibrated frame's width_px and height_px")
    if not all(math.isfinite(f) and f > 0 for f in focal_lengths_px):
        raise ValueError(f"a lens's focal lengths must be positive, got {focal_lengths_px}")
    return Lens(model, values, focal_lengths_px, principal_point_px, int(width_px), int(height_px))


def lens_from_preset(preset: Mapping[str, Any], width_px: int, height_px: int, focal_length_px: float) -> Lens:
    """The `lens` block of a camera preset: `model`, `distortion` (its coefficients) and optionally
    `principal_point_px` (default: the centre of the `width_px` x `height_px` frame). Raises ValueError when
    something is missing or out of range."""
    try:
        coefficients = [float(value) for value in preset["distortion"]]
        centre = preset.get("principal_point_px", (width_px / 2, height_px / 2))
        principal_point = (float(centre[0]), float(centre[1]))
    except (KeyError, TypeError, ValueError, IndexError):
        raise ValueError("a lens needs distortion: [coefficients] and optionally principal_point_px: [x, y]") from None
    focal = float(focal_length_px)
    return make_lens(str(preset.get("model")), coefficients, (focal, focal), principal_point, width_px, height_px)


@functools.lru_cache(maxsize=4)
def undistortion_maps(lens: Lens, height: int, width: int, focal_length_px: float) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel of the pinhole image of `height` x `width` (focal length `focal_length_px`, principal point
    at the centre), where to sample the lens's image of the same size (`cv2.remap` maps, float32)."""
    distorted = lens.camera_matrix(height, width)
    pinhole = intrinsics(height, width, focal_length_px)
    coefficients = np.array(lens.coefficients, dtype=np.float64)
    if lens.model == "fisheye":
        return cv2.fisheye.initUndistortRectifyMap(
            distorted, coefficients, np.eye(3), pinhole, (width, height), cv2.CV_32FC1
        )
    return cv2.initUndistortRectifyMap(distorted, coefficients, np.eye(3), pinhole, (width, height), cv2.CV_32FC1)


def undistort(image: np.ndarray, lens: Lens, focal_length_px: float) -> np.ndarray:
    """The pinhole image (focal length `focal_length_px`, principal point at the centre) of the lens's image:
    bilinear resampling, edges replicated where the pinhole view reaches past the lens's."""
    height, width = image.shape[:2]
    map_x, map_y = undistortion_maps(lens, height, width, float(focal_length_px))
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def undistort_points(points: np.ndarray, lens: Lens, height: int, width: int, focal_length_px: float) -> np.ndarray:
    """Pixel positions `(N, 2)` in the lens's image of `height` x `width` as positions in its pinhole image."""
    distorted = lens.camera_matrix(height, width)
    pinhole = intrinsics(height, width, focal_length_px)
    coefficients = np.array(lens.coefficients, dtype=np.float64)
    located = np.asarray(points, dtype=np.float64).reshape(-1, 1, 2)
    if lens.model == "fisheye":
        moved = cv2.fisheye.undistortPoints(located, distorted, coefficients, R=np.eye(3), P=pinhole)
    else:
        moved = cv2.undistortPoints(located, distorted, coefficients, R=np.eye(3), P=pinhole)
    return moved.reshape(-1, 2)
