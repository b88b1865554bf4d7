"""`runtime.io.lens`: a lens's image resampled onto the pinhole camera the blur model assumes, by OpenCV's models."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime.io.lens import (
    Lens,
    LensError,
    lens_from_preset,
    make_lens,
    undistort,
    undistort_points,
    undistortion_maps,
)
from tests.runtime.conftest import distort

HEIGHT, WIDTH, FOCAL = 240, 320, 260.0
LENSES = [
    Lens("standard", (-0.25, 0.08, 0.0005, -0.0003), (FOCAL, 1.01 * FOCAL), (163.0, 118.0), WIDTH, HEIGHT),
    Lens("fisheye", (0.05, -0.02, 0.01, -0.002), (FOCAL, FOCAL), (160.0, 120.0), WIDTH, HEIGHT),
]


def _texture() -> np.ndarray:
    blocks = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    return cv2.GaussianBlur(cv2.resize(blocks, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST), (0, 0), 2.0)


@pytest.mark.parametrize("lens", LENSES, ids=lambda lens: lens.model)
def test_undistorting_what_the_lens_saw_gives_back_the_pinhole_image(lens):
    """Away from the edges (which the pinhole view reaches past), up to two bilinear resamplings. Measured: 0.024
    standard, 0.020 fisheye, where the distorted image differs from the pinhole one by 0.75 and 0.68."""
    image = _texture()
    seen = distort(image, lens, FOCAL)
    core = (slice(40, HEIGHT - 40), slice(50, WIDTH - 50))
    assert np.abs(undistort(seen, lens, FOCAL)[core] - image[core]).max() < 0.03
    assert np.abs(seen[core] - image[core]).max() > 0.3


@pytest.mark.parametrize("lens", LENSES, ids=lambda lens: lens.model)
def test_points_and_maps_agree(lens):
    """A pinhole pixel's map entry is where the lens sees it; undistorting that position gives the pixel back."""
    map_x, map_y = undistortion_maps(lens, HEIGHT, WIDTH, FOCAL)
    pixels = np.array([[10, 12], [160, 120], [300, 20], [37, 221], [319, 239]])
    seen = np.stack([map_x[pixels[:, 1], pixels[:, 0]], map_y[pixels[:, 1], pixels[:, 0]]], axis=1)
    np.testing.assert_allclose(undistort_points(seen, lens, HEIGHT, WIDTH, FOCAL), pixels, atol=0.01)


def test_a_lens_scales_with_the_image_and_refuses_another_aspect():
    lens = LENSES[0]
    half = lens.camera_matrix(HEIGHT // 2, WIDTH // 2)
    np.testing.assert_allclose(half, [[FOCAL / 2, 0, 163.0 / 2], [0, 1.01 * FOCAL / 2, 118.0 / 2], [0, 0, 1]])
    with pytest.raises(ValueError, match="calibrated at 320x240; a 320x320 image has another aspect"):
        lens.camera_matrix(320, 320)


def test_a_preset_lens_block_is_checked():
    lens = lens_from_preset({"model": "fisheye", "distortion": [0.1, 0, 0, 0]}, 640, 480, 500.0)
    assert lens == Lens("fisheye", (0.1, 0.0, 0.0, 0.0), (500.0, 500.0), (320.0, 240.0), 640, 480)
    for block, height, message in [
        ({"model": "pinhole", "distortion": [0, 0, 0, 0]}, 480, "lens model must be one of standard, fisheye"),
        ({"model": "fisheye", "distortion": [0.1, 0, 0]}, 480, "a fisheye lens takes 4 finite distortion"),
        ({"model": "standard", "distortion": [0.1, 0, 0, float("nan")]}, 480, "finite distortion coefficients"),
        ({"model": "standard"}, 480, "a lens needs distortion"),
        ({"model": "standard", "distortion": [0, 0, 0, 0], "principal_point_px": [1]}, 480, "principal_point_px"),
        ({"model": "standard", "distortion": [0, 0, 0, 0]}, 0, "needs the calibrated frame.s width_px and height_px"),
    ]:
        with pytest.raises(ValueError, match=message):
            lens_from_preset(block, 640, height, 500.0)


@pytest.mark.parametrize(
    ("focal_lengths", "centre", "message"),
    [
        ((1e30, 260.0), (160.0, 120.0), "focal length x: focal length 1e+30 px is outside 1..1000000 px"),
        ((260.0, float("nan")), (160.0, 120.0), "focal length y: focal length nan px is outside 1..1000000 px"),
        (
            (260.0, 260.0),
            (1e30, 120.0),
            "principal point x 1e+30 px is outside 0..320 px, the 320x240 calibrated frame",
        ),
        (
            (260.0, 260.0),
            (160.0, float("nan")),
            "principal point y nan px is outside 0..240 px, the 320x240 calibrated frame",
        ),
        ((260.0, 260.0), (160.0, -1.0), "principal point y -1.0 px is outside 0..240 px, the 320x240 calibrated frame"),
    ],
)
def test_a_lens_with_its_centre_off_the_frame_or_an_absurd_focal_length_is_refused(focal_lengths, centre, message):
    """A NaN or far-off lens centre would otherwise reach the undistortion maps and be blamed on what comes after."""
    with pytest.raises(LensError) as caught:
        make_lens("fisheye", (0.0, 0.0, 0.0, 0.0), focal_lengths, centre, WIDTH, HEIGHT)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_preset_lens_block_names_its_centre_and_takes_only_lists():
    with pytest.raises(
        LensError, match=r"^lens.principal_point_px y 1e\+30 px is outside 0..480 px, the 640x480 calibrated frame$"
    ):
        lens_from_preset(
            {"model": "fisheye", "distortion": [0, 0, 0, 0], "principal_point_px": [0, 1e30]}, 640, 480, 5e2
        )
    for block in (
        {"model": "fisheye", "distortion": "0000"},
        {"model": "fisheye", "distortion": [0] * 4, "principal_point_px": "12"},
    ):
        with pytest.raises(LensError, match="a lens needs distortion"):
            lens_from_preset(block, 640, 480, 500.0)
