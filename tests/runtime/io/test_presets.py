"""`runtime.io.presets`: camera presets, with and without a lens calibration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.io.lens import Lens
from runtime.io.presets import CameraPreset, PresetError, read_camera_preset

ROOT = Path(__file__).resolve().parents[3]


def test_the_shipped_presets_read_without_a_lens():
    preset = read_camera_preset(ROOT / "configs" / "cameras" / "rpi-camera-v2.yaml")
    assert preset == CameraPreset(2714.0, 3280, 2464, None)
    assert preset.focal_length_at(1232, 1640) == pytest.approx(1357.0)  # the 2x2-binned mode
    assert preset.focal_length_at(1640, 1232) == pytest.approx(1357.0)  # portrait: by the longer sides


def test_a_preset_with_a_lens(tmp_path):
    path = tmp_path / "action.yaml"
    path.write_text(
        "focal_length_px: 1400\nwidth_px: 3840\nheight_px: 2160\n"
        "lens:\n  model: fisheye\n  distortion: [0.05, -0.02, 0.01, -0.002]\n  principal_point_px: [1915, 1083]\n"
    )
    lens = read_camera_preset(path).lens
    assert lens == Lens("fisheye", (0.05, -0.02, 0.01, -0.002), (1400.0, 1400.0), (1915.0, 1083.0), 3840, 2160)


def _profile(**changes: object) -> dict:
    """A Gyroflow lens profile of the shape Gyroflow's calibrator writes (made-up numbers)."""
    profile = {
        "name": "made-up action camera",
        "calib_dimension": {"w": 3840, "h": 2160},
        "fisheye_params": {
            "RMS_error": 0.9,
            "camera_matrix": [[2150.0, 0.0, 1921.0], [0.0, 2146.0, 1065.0], [0.0, 0.0, 1.0]],
            "distortion_coeffs": [-0.03, 0.008, -0.017, 0.014],
            "radial_distortion_limit": None,
        },
        "distortion_model": None,
        "input_horizontal_stretch": 1.0,
        "input_vertical_stretch": 1.0,
        "frame_readout_time": None,
    }
    profile.update(changes)
    return profile


def test_a_gyroflow_lens_profile_is_a_preset(tmp_path):
    """Its calibrated frame, both focal lengths and the principal point, OpenCV's fisheye model; the preset's focal
    length is their mean."""
    path = tmp_path / "camera.json"
    path.write_text(json.dumps(_profile()))
    preset = read_camera_preset(path)
    assert preset.lens == Lens("fisheye", (-0.03, 0.008, -0.017, 0.014), (2150.0, 2146.0), (1921.0, 1065.0), 3840, 2160)
    assert (preset.focal_length_px, preset.width_px, preset.height_px) == (2148.0, 3840, 2160)
    assert preset.focal_length_at(1080, 1920) == pytest.approx(1074.0)
    for changes, message in [
        ({"distortion_model": "poly3"}, "lens model 'poly3' is not one this runtime follows"),
        ({"input_horizontal_stretch": 1.33}, "stretches the image"),
        ({"fisheye_params": {"camera_matrix": [[1.0]], "distortion_coeffs": []}}, "not a usable Gyroflow lens"),
        ({"calib_dimension": {"w": 3840}}, "not a usable Gyroflow lens profile"),
    ]:
        path.write_text(json.dumps(_profile(**changes)))
        with pytest.raises(ValueError, match=message) as caught:
            read_camera_preset(path)
        assert str(caught.value).startswith(str(path)) and str(caught.value).count(str(path)) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("focal_length_px: 1400\nwidth_px: 3840\nlens: fisheye\n", "lens must be a block"),
        ("focal_length_px: 1400\nwidth_px: 3840\nlens:\n  model: fisheye\n  distortion: [0, 0, 0, 0]\n", "height_px"),
        ("width_px: 3840\n", "not a camera preset with focal_length_px and width_px"),
    ],
)
def test_a_bad_preset_is_refused_in_one_line_naming_it(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as caught:
        read_camera_preset(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "focal_length_px: 1.0e+30\nwidth_px: 3840\n",
            "focal_length_px: focal length 1e+30 px is outside 1..1000000 px",
        ),
        ("focal_length_px: .nan\nwidth_px: 3840\n", "focal_length_px: focal length nan px is outside 1..1000000 px"),
        ("focal_length_px: 1400\nwidth_px: .inf\n", "not a camera preset with focal_length_px and width_px"),
        (
            "focal_length_px: 1400\nwidth_px: 1000000\nheight_px: 1000000\n",
            "image size 1000000000000 pixels is outside",
        ),
        (
            "focal_length_px: 1400\nwidth_px: 3840\nheight_px: 2160\n"
            "lens:\n  model: fisheye\n  distortion: [0, 0, 0, 0]\n  principal_point_px: [1.0e+30, 1080]\n",
            "lens.principal_point_px x 1e+30 px is outside 0..3840 px, the 3840x2160 calibrated frame",
        ),
        (
            "focal_length_px: 1400\nwidth_px: 3840\nheight_px: 2160\n"
            "lens:\n  model: fisheye\n  distortion: [0, 0, 0, 0]\n  principal_point_px: [1920, .nan]\n",
            "lens.principal_point_px y nan px is outside 0..2160 px, the 3840x2160 calibrated frame",
        ),
        (
            "a: " + "[" * 5000 + "]" * 5000 + "\n",
            "not a camera preset with focal_length_px and width_px (nested too deep",
        ),
    ],
)
def test_a_preset_beyond_any_camera_is_refused_naming_the_value_and_the_limit(tmp_path, text, message):
    path = tmp_path / "camera.yaml"
    path.write_text(text)
    with pytest.raises(PresetError) as caught:
        read_camera_preset(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"camera_matrix": [[1e30, 0.0, 1921.0], [0.0, 2146.0, 1065.0], [0.0, 0.0, 1.0]]},
            "(fisheye_params.camera_matrix fx: focal length 1e+30 px is outside 1..1000000 px)",
        ),
        (
            {"camera_matrix": [[2150.0, 0.0, 1e30], [0.0, 2146.0, 1065.0], [0.0, 0.0, 1.0]]},
            "(fisheye_params.camera_matrix cx 1e+30 px is outside 0..3840 px, the 3840x2160 calibrated frame)",
        ),
        (
            {"camera_matrix": [[2150.0, 0.0, 1921.0], [0.0, 2146.0, -5.0], [0.0, 0.0, 1.0]]},
            "(fisheye_params.camera_matrix cy -5.0 px is outside 0..2160 px, the 3840x2160 calibrated frame)",
        ),
    ],
)
def test_a_gyroflow_profile_beyond_any_camera_is_refused(tmp_path, changes, message):
    profile = _profile()
    profile["fisheye_params"].update(changes)
    path = tmp_path / "camera.json"
    path.write_text(json.dumps(profile))
    with pytest.raises(PresetError) as caught:
        read_camera_preset(path)
    assert str(caught.value) == f"{path}: not a usable Gyroflow lens profile {message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"calib_dimension": ' + "[" * 40 + "]" * 40 + "}", "JSON nesting 41 levels is outside 0..32 levels"),
        ('{"calib_dimension": ' + "[" * 100_000 + "]" * 100_000 + "}", "JSON nested too deep to parse"),
        ('{"calib_dimension": {"w": 1' + "0" * 400 + ', "h": 1}}', "not a usable Gyroflow lens profile"),
        ('{"calib_dimension": {}, "distortion_model": []}', "lens model [] is not one this runtime follows"),
        (" " * (16 * 2**20 + 1), "camera preset: file size 16777217 bytes is outside 0..16777216 bytes"),
    ],
)
def test_a_gyroflow_profile_nested_too_deep_or_too_large_is_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "camera.json"
    path.write_text(text)
    with pytest.raises(PresetError) as caught:
        read_camera_preset(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)
