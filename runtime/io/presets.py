"""Camera presets (`configs/cameras/NAME.yaml`, or Gyroflow lens profiles): a sensor mode's focal length, and its
lens's distortion if any."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runtime.core import textfiles
from runtime.core.limits import FOCAL_LENGTH_PX, IMAGE_PIXELS, LimitError
from runtime.io.lens import Lens, LensError, lens_from_preset, make_lens


class PresetError(ValueError):
    """A camera preset or lens profile that cannot be used; one line naming the file."""


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
    (`runtime.io.lens.lens_from_preset`); or a Gyroflow lens profile (`gyroflow_profile`). The focal length must lie
    within `FOCAL_LENGTH_PX`, the frame within `IMAGE_PIXELS`, the file within `TEXT_FILE_BYTES` (and a JSON one
    within `JSON_DEPTH`; `runtime.core.limits`). Raises PresetError naming the file."""
    what = "not a camera preset with focal_length_px and width_px"
    try:
        text = textfiles.read_text(path, "camera preset")
        preset = textfiles.parse_json(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except textfiles.TextFileError as error:
        raise PresetError(f"{path}: {error}") from None
    except RecursionError:
        raise PresetError(f"{path}: {what} (nested too deep to parse)") from None
    except (yaml.YAMLError, ValueError) as error:
        reason = str(error).splitlines()[0]
        raise PresetError(f"{path}: {what} ({reason})") from None
    if isinstance(preset, dict) and "calib_dimension" in preset:
        return gyroflow_profile(path, preset)
    try:
        focal, width = float(preset["focal_length_px"]), int(preset["width_px"])
        height = int(preset.get("height_px", 0))
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PresetError(f"{path}: {what} ({reason})") from None
    if not (width > 0 and height >= 0):
        raise PresetError(f"{path}: width_px must be positive and height_px at least 0, got {width} and {height}")
    try:
        FOCAL_LENGTH_PX.check(focal, f"{path}: focal_length_px")
        IMAGE_PIXELS.check(width * max(height, 1), f"{path}: width_px x height_px {width}x{height}")
    except LimitError as error:
        raise PresetError(str(error)) from None
    lens = None
    if preset.get("lens") is not None:
        if not isinstance(preset["lens"], dict):
            raise PresetError(f"{path}: lens must be a block of model, distortion and principal_point_px")
        try:
            lens = lens_from_preset(preset["lens"], width, height, focal)
        except LensError as error:
            raise PresetError(f"{path}: {error}") from None
    return CameraPreset(focal, width, height, lens)


#: Gyroflow's names of the lens models this runtime follows (a profile without one is OpenCV's fisheye).
GYROFLOW_MODELS = {None: "fisheye", "opencv_fisheye": "fisheye"}


def gyroflow_profile(path: Path, profile: dict[str, Any]) -> CameraPreset:
    """A Gyroflow lens profile (JSON, as Gyroflow's lens calibrator writes them): the calibrated frame
    `calib_dimension`, and `fisheye_params` with the `camera_matrix` and `distortion_coeffs` of OpenCV's fisheye
    model. Profiles of Gyroflow's other lens models, or with a digital stretch, are refused; so are focal lengths
    outside `FOCAL_LENGTH_PX` and a principal point outside the calibrated frame (`PRINCIPAL_POINT_FRACTION`)."""
    name = profile.get("distortion_model")
    if not (name is None or isinstance(name, str)) or name not in GYROFLOW_MODELS:
        raise PresetError(f"{path}: lens model {name!r:.60} is not one this runtime follows (OpenCV's fisheye)")
    stretches = (profile.get("input_horizontal_stretch") or 1.0, profile.get("input_vertical_stretch") or 1.0)
    if stretches != (1.0, 1.0):
        raise PresetError(
            f"{path}: the profile stretches the image {stretches!r:.60}; stretched inputs are not followed"
        )
    try:
        width, height = int(profile["calib_dimension"]["w"]), int(profile["calib_dimension"]["h"])
        (fx, _, cx), (_, fy, cy), _ = profile["fisheye_params"]["camera_matrix"]
        coefficients = [float(value) for value in profile["fisheye_params"]["distortion_coeffs"]]
        focal_lengths, centre = (float(fx), float(fy)), (float(cx), float(cy))
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise PresetError(f"{path}: not a usable Gyroflow lens profile ({str(error):.100})") from None
    matrix = "fisheye_params.camera_matrix"
    names = (f"{matrix} fx", f"{matrix} fy", f"{matrix} cx", f"{matrix} cy")
    try:
        lens = make_lens(GYROFLOW_MODELS[name], coefficients, focal_lengths, centre, width, height, names)
    except LensError as error:
        raise PresetError(f"{path}: not a usable Gyroflow lens profile ({error})") from None
    return CameraPreset(0.5 * (lens.focal_lengths_px[0] + lens.focal_lengths_px[1]), width, height, lens)
