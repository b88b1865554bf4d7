"""Camera presets (`configs/cameras/NAME.yaml`, or Gyroflow lens profiles): a sensor mode's focal length, and its
lens's distortion if any."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runtime.io.lens import Lens, lens_from_preset, make_lens


@dataclass(frozen=True)
class CameraPreset:
    """The focal length (pixels) at a sensor mode of `width_px` x `height_px` (height 0: not given), which images
    are scaled against by their longer side, so portrait shots of the same camera scale right; and the lens's
    calibration at that mode, when its distortion is to be undone (`runtime.io.lens`)."""

    focal_length_px: float
    width_px: int
    height_px: int = 0
    lens: Lens | None = None

    @property
    def long_side_px(self) -> int:
        return max(self.width_px, self.height_px)

    def focal_length_at(self, height: int, width: int) -> float:
        """The focal length in pixels of an image of `height` x `width` taken in this mode (scaled by the longer
        sides)."""
        return self.focal_length_px * max(height, width) / self.long_side_px


def read_camera_preset(path: Path) -> CameraPreset:
    """A camera preset YAML: `focal_length_px`, `width_px`, optionally `height_px` and a `lens` block
    (`runtime.io.lens.lens_from_preset`); or a Gyroflow lens profile (`gyroflow_profile`). Raises ValueError naming
    the file."""
    try:
        text = path.read_text()
        preset = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except OSError as error:
        raise ValueError(f"{path}: cannot read camera preset ({error.strerror or error})") from None
    except (yaml.YAMLError, ValueError) as error:
        reason = str(error).splitlines()[0]
        raise ValueError(f"{path}: not a camera preset with focal_length_px and width_px ({reason})") from None
    if isinstance(preset, dict) and "calib_dimension" in preset:
        return gyroflow_profile(path, preset)
    try:
        focal, width = float(preset["focal_length_px"]), int(preset["width_px"])
        height = int(preset.get("height_px", 0))
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: not a camera preset with focal_length_px and width_px ({reason})") from None
    if not (focal > 0 and width > 0 and height >= 0):
        raise ValueError(f"{path}: focal_length_px and width_px must be positive, got {focal} and {width}")
    lens = None
    if preset.get("lens") is not None:
        if not isinstance(preset["lens"], dict):
            raise ValueError(f"{path}: lens must be a block of model, distortion and principal_point_px")
        try:
            lens = lens_from_preset(preset["lens"], width, height, focal)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    return CameraPreset(focal, width, height, lens)


#: Gyroflow's names of the lens models this runtime follows (a profile without one is OpenCV's fisheye).
GYROFLOW_MODELS = {None: "fisheye", "opencv_fisheye": "fisheye"}


def gyroflow_profile(path: Path, profile: dict[str, Any]) -> CameraPreset:
    """A Gyroflow lens profile (JSON, as Gyroflow's lens calibrator writes them): the calibrated frame
    `calib_dimension`, and `fisheye_params` with the `camera_matrix` and `distortion_coeffs` of OpenCV's fisheye
    model. Profiles of Gyroflow's other lens models, or with a digital stretch, are refused."""
    name = profile.get("distortion_model")
    if name not in GYROFLOW_MODELS:
        raise ValueError(f"{path}: lens model {name!r} is not one this runtime follows (OpenCV's fisheye)")
    stretches = (profile.get("input_horizontal_stretch") or 1.0, profile.get("input_vertical_stretch") or 1.0)
    if stretches != (1.0, 1.0):
        raise ValueError(f"{path}: the profile stretches the image {stretches}; stretched inputs are not followed")
    try:
        width, height = int(profile["calib_dimension"]["w"]), int(profile["calib_dimension"]["h"])
        (fx, _, cx), (_, fy, cy), _ = profile["fisheye_params"]["camera_matrix"]
        coefficients = [float(value) for value in profile["fisheye_params"]["distortion_coeffs"]]
        lens = make_lens(
            GYROFLOW_MODELS[name], coefficients, (float(fx), float(fy)), (float(cx), float(cy)), width, height
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: not a usable Gyroflow lens profile ({error})") from None
    return CameraPreset(0.5 * (lens.focal_lengths_px[0] + lens.focal_lengths_px[1]), width, height, lens)
