"""`runtime.tools.feeds`: the synthetic image, camera shake and blur-operator inputs the measurements run on."""

import numpy as np

from runtime.tools import feeds


def test_the_synthetic_image_and_shake_are_deterministic_and_in_range():
    image = feeds.synthetic_image(40, 56)
    assert image.shape == (40, 56, 3) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.05
    np.testing.assert_array_equal(image, feeds.synthetic_image(40, 56))
    trajectory = feeds.synthetic_trajectory(25)
    assert trajectory.shape == (25, 3) and trajectory.dtype == np.float32
    assert np.abs(trajectory).max() <= feeds.TRAJECTORY_RAD


def test_the_warp_stages_sample_the_synthetic_shake_inside_the_image():
    feed = feeds.warp_feed(48, 64, 25)
    assert feed["image"].shape == (1, 3, 48, 64) and feed["grid"].shape == (1, 25 * 48, 64, 2)
    assert feed["grid"].dtype == np.float32 and np.abs(feed["grid"]).max() <= 1
    # The poses move the centre pixel apart (about a pixel at this size): the warps interpolate for real.
    centre = feed["grid"].reshape(25, 48, 64, 2)[:, 24, 32, 0]
    assert np.ptp(centre) * 63 / 2 > 0.5
