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
from runtime.core.limits import FOCAL_LENGTH_PX, IMAGE_PIXELS, PRINCIPAL_POINT_FRACTION, LimitError

#: OpenCV's lens models, and how many distortion coefficients each takes.
MODEL_COEFFICIENTS = {"standard": (4, 5, 8, 12, 14), "fisheye": (4,)}
#: Images whose aspect differs from the calibration's by more than this are refused (a cropped sensor mode).
ASPECT_TOLERANCE = 0.01
#: What `make_lens` calls fx, fy, cx and cy in its refusals, unless told the names of the file they came from.
LENS_NAMES = ("focal length x", "focal length y", "principal point x", "principal point y")


class LensError(ValueError):
    """A lens calibration that cannot be used, or an image it does not fit; one line saying what is wrong."""


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
            raise LensError(
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
    names: tuple[str, str, str, str] = LENS_NAMES,
) -> Lens:
    """A `Lens`, checked: a known model with as many finite coefficients as it takes, a frame of at most
    `IMAGE_PIXELS`, focal lengths within `FOCAL_LENGTH_PX` and the principal point inside the frame
    (`PRINCIPAL_POINT_FRACTION`). Raises LensError saying what is wrong, fx, fy, cx and cy called by `names`."""
    if model not in MODEL_COEFFICIENTS:
        raise LensError(f"lens model must be one of {', '.join(MODEL_COEFFICIENTS)}, got {model!r}")
    values = tuple(float(value) for value in coefficients)
    if len(values) not in MODEL_COEFFICIENTS[model] or not all(map(math.isfinite, values)):
        counts = " or ".join(map(str, MODEL_COEFFICIENTS[model]))
        raise LensError(f"a {model} lens takes {counts} finite distortion coefficients, got {list(values)}")
    if height_px <= 0 or width_px <= 0:
        raise LensError("a lens needs the calibrated frame's width_px and height_px")
    try:
        IMAGE_PIXELS.check(width_px * height_px, f"the lens's calibrated frame {width_px}x{height_px}")
        focal_x, focal_y = (FOCAL_LENGTH_PX.check(f, name) for f, name in zip(focal_lengths_px, names[:2], strict=True))
        centre_x, centre_y = (
            _inside(value, side, name, width_px, height_px)
            for value, side, name in zip(principal_point_px, (width_px, height_px), names[2:], strict=True)
        )
    except LimitError as error:
        raise LensError(str(error)) from None
    return Lens(model, values, (focal_x, focal_y), (centre_x, centre_y), int(width_px), int(height_px))


def _inside(value: float, side: int, name: str, width_px: int, height_px: int) -> float:
    """A principal point coordinate (px) inside its side of the calibrated frame (`PRINCIPAL_POINT_FRACTION`)."""
    try:
        PRINCIPAL_POINT_FRACTION.check(float(value) / side)
    except LimitError:
        low, high = (bound * side for bound in (PRINCIPAL_POINT_FRACTION.low, PRINCIPAL_POINT_FRACTION.high))
        raise LensError(
            f"{name} {float(value)!r} px is outside {low:g}..{high:g} px, the {width_px}x{height_px} calibrated frame"
        ) from None
    return float(value)


def lens_from_preset(preset: Mapping[str, Any], width_px: int, height_px: int, focal_length_px: float) -> Lens:
    """The `lens` block of a camera preset: `model`, `distortion` (its coefficients) and optionally
    `principal_point_px` (default: the centre of the `width_px` x `height_px` frame). Raises LensError when
    something is missing or out of range."""
    try:
        distortion, centre = preset["distortion"], preset.get("principal_point_px", (width_px / 2, height_px / 2))
        if not (isinstance(distortion, list | tuple) and isinstance(centre, list | tuple) and len(centre) == 2):
            raise TypeError
        coefficients = [float(value) for value in distortion]
        principal_point = (float(centre[0]), float(centre[1]))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise LensError("a lens needs distortion: [coefficients] and optionally principal_point_px: [x, y]") from None
    focal = float(focal_length_px)
    names = ("focal_length_px", "focal_length_px", "lens.principal_point_px x", "lens.principal_point_px y")
    return make_lens(
        str(preset.get("model")), coefficients, (focal, focal), principal_point, width_px, height_px, names
    )


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
