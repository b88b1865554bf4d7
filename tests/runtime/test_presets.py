"""`runtime.presets`: camera presets, with and without a lens calibration."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.lens import Lens
from runtime.presets import CameraPreset, read_camera_preset

ROOT = Path(__file__).resolve().parents[2]


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
    assert lens == Lens("fisheye", (0.05, -0.02, 0.01, -0.002), 1400.0, (1915.0, 1083.0), 3840, 2160)


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
