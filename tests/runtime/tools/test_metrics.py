"""`runtime.tools.metrics`: PSNR and SSIM against scikit-image, the trajectory error against known geometry."""

import itertools
import math

import numpy as np
import pytest

from runtime.tools import metrics
from tests.runtime.conftest import smooth_rgb

HEIGHT, WIDTH = 45, 64


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    """A smooth picture and a noisy, slightly darkened copy (float64 RGB in [0, 1])."""
    sharp = smooth_rgb(HEIGHT, WIDTH).astype(np.float64)
    noisy = np.clip(0.9 * sharp + 0.05 * np.random.default_rng(1).standard_normal(sharp.shape), 0, 1)
    return sharp, noisy


@pytest.fixture(scope="module")
def shake() -> np.ndarray:
    """A smooth random walk of 25 poses, a few pixels of blur at f = 64."""
    steps = 0.01 * np.random.default_rng(2).standard_normal((25, 3))
    steps[:, 2] *= 0.3
    poses = np.cumsum(steps, axis=0)
    return poses - poses.mean(axis=0)


def skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    metrics_module = pytest.importorskip("skimage.metrics")
    channel_axis = -1 if a.ndim == 3 else None
    return float(
        metrics_module.structural_similarity(
            a,
            b,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=channel_axis,
        )
    )


def test_psnr_of_identical_images_is_infinite(images):
    assert metrics.psnr(images[0], images[0]) == math.inf


def test_psnr_of_a_known_error():
    image = np.full((8, 8, 3), 0.5)
    assert metrics.psnr(image + 0.1, image) == pytest.approx(20.0)  # MSE 0.01, range 1
    assert metrics.psnr((image + 0.1) * 255, image * 255, data_range=255) == pytest.approx(20.0)


def test_psnr_agrees_with_scikit_image(images):
    skimage_metrics = pytest.importorskip("skimage.metrics")
    expected = skimage_metrics.peak_signal_noise_ratio(images[0], images[1], data_range=1.0)
    assert metrics.psnr(images[1], images[0]) == pytest.approx(expected, rel=1e-12)


def test_ssim_of_identical_images_is_one(images):
    assert metrics.ssim(images[0], images[0]) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("channels", [3, 1])
def test_ssim_agrees_with_scikit_image(images, channels):
    sharp, noisy = images
    if channels == 1:
        sharp, noisy = sharp[..., 0], noisy[..., 0]
    ours = metrics.ssim(noisy, sharp)
    assert 0.3 < ours < 0.99  # a real test case, neither trivial nor hopeless
    assert ours == pytest.approx(skimage_ssim(noisy, sharp), abs=1e-9)


def test_ssim_takes_float32_images(images):
    sharp, noisy = (image.astype(np.float32) for image in images)
    assert metrics.ssim(noisy, sharp) == pytest.approx(skimage_ssim(noisy, sharp), abs=1e-6)


def test_ssim_averages_the_rgb_channels(images):
    sharp, noisy = images
    per_channel = [metrics.ssim(noisy[..., c], sharp[..., c]) for c in range(3)]
    assert metrics.ssim(noisy, sharp) == pytest.approx(np.mean(per_channel), abs=1e-12)


def test_image_metrics_refuse_mismatched_or_tiny_images(images):
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(images[0], images[0][:-1])
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(images[0][:10], images[0][:10])


def test_identical_trajectories_have_zero_error(shake):
    assert metrics.trajectory_error(shake, shake, HEIGHT, WIDTH) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("order", ["reversed", "permuted"])
def test_the_error_ignores_the_order_of_the_poses(shake, order):
    rng = np.random.default_rng(3)
    estimate = shake[::-1] if order == "reversed" else shake[rng.permutation(len(shake))]
    assert metrics.trajectory_error(estimate, shake, HEIGHT, WIDTH) == pytest.approx(0.0, abs=1e-9)
    # ...which a pose-by-pose comparison would not.
    assert metrics.pose_costs(estimate, shake, HEIGHT, WIDTH).diagonal().mean() > 0.5


@pytest.mark.parametrize("axis, coordinate", [(1, 0), (0, 1)])
def test_a_rotation_of_atan_d_over_f_moves_the_centre_by_d_pixels(axis, coordinate):
    """Yaw (pitch) by atan(d / f) carries the principal point d px along x (y); zero motion is d px away."""
    focal, d = 300.0, 7.0
    truth = np.zeros((25, 3))
    truth[:, axis] = math.atan(d / focal)
    centre = [[WIDTH / 2, HEIGHT / 2]]
    error = metrics.zero_motion_error(truth, HEIGHT, WIDTH, focal, points=centre)
    assert error == pytest.approx(d, rel=1e-4)  # 1e-4: the reference's Rodrigues epsilon shortens the axis
    paths = metrics.point_paths(truth, metrics.intrinsics(HEIGHT, WIDTH, focal), centre)
    assert abs(paths[0, 0, coordinate] - centre[0][coordinate]) == pytest.approx(d, rel=1e-4)
    # At the corners the same rotation moves points further (perspective): the default points see more.
    assert metrics.zero_motion_error(truth, HEIGHT, WIDTH, focal) > d


def test_the_zero_motion_baseline_is_the_error_of_the_zero_trajectory(shake):
    expected = metrics.trajectory_error(np.zeros_like(shake), shake, HEIGHT, WIDTH, 90.0)
    assert metrics.zero_motion_error(shake, HEIGHT, WIDTH, 90.0) == pytest.approx(expected, abs=1e-12)
    # With every estimated pose equal, matching cannot help: the baseline is the plain mean displacement.
    still = metrics.reference_points(HEIGHT, WIDTH)
    moved = metrics.point_paths(shake, metrics.intrinsics(HEIGHT, WIDTH, 90.0), still)
    plain = np.linalg.norm(moved - still[None], axis=-1).mean()
    assert metrics.zero_motion_error(shake, HEIGHT, WIDTH, 90.0) == pytest.approx(plain, rel=1e-9)
    assert plain > 1.0


def test_the_error_scales_with_the_focal_length(shake):
    """Small rotations move points by about f x angle: doubling f about doubles the error."""
    short = metrics.zero_motion_error(shake, HEIGHT, WIDTH, 500.0)
    long = metrics.zero_motion_error(shake, HEIGHT, WIDTH, 1000.0)
    assert long / short == pytest.approx(2.0, rel=0.02)


def test_the_matching_is_the_best_one_to_one_assignment():
    """Against brute force over every permutation of 6 poses."""
    rng = np.random.default_rng(4)
    estimate, truth = 0.02 * rng.standard_normal((6, 3)), 0.02 * rng.standard_normal((6, 3))
    costs = metrics.pose_costs(estimate, truth, HEIGHT, WIDTH)
    best = min(costs[range(6), list(order)].mean() for order in itertools.permutations(range(6)))
    assert metrics.trajectory_error(estimate, truth, HEIGHT, WIDTH) == pytest.approx(best, rel=1e-12)
    assert best < costs.diagonal().mean()


def test_the_matched_trajectory_puts_each_estimated_pose_beside_its_true_pose(shake):
    """A shuffled, perturbed copy comes back in the truth's order; moving each true pose towards its match then
    grows the error from 0 to the estimate's."""
    rng = np.random.default_rng(5)
    estimate = shake[rng.permutation(len(shake))] + 0.001 * rng.standard_normal(shake.shape)
    matched = metrics.matched_trajectory(estimate, shake, HEIGHT, WIDTH)
    assert sorted(map(tuple, matched)) == sorted(map(tuple, estimate))
    error = metrics.trajectory_error(estimate, shake, HEIGHT, WIDTH)
    assert metrics.pose_costs(matched, shake, HEIGHT, WIDTH).diagonal().mean() == pytest.approx(error, rel=1e-12)
    blended = [metrics.trajectory_error(shake + a * (matched - shake), shake, HEIGHT, WIDTH) for a in (0, 0.5, 1)]
    assert blended[0] == 0 and blended[1] == pytest.approx(error / 2, rel=0.02) and blended[2] == pytest.approx(error)


def test_the_error_is_symmetric_and_positive_for_different_motions(shake):
    other = shake * 1.5 + 0.002
    forward = metrics.trajectory_error(other, shake, HEIGHT, WIDTH)
    assert forward > 0.1
    assert metrics.trajectory_error(shake, other, HEIGHT, WIDTH) == pytest.approx(forward, rel=1e-12)


def test_the_reference_order_follows_a_path_up_to_reversal(shake):
    """On a straight sweep the reference's order is the time order (or its reverse), whatever the poses' order."""
    sweep = np.linspace(-1, 1, 25)[:, None] * np.array([0.02, 0.01, 0.003])
    shuffled = np.random.default_rng(0).permutation(25)
    order = metrics.reference_order(sweep[shuffled])
    assert list(shuffled[order]) in (list(range(25)), list(range(24, -1, -1)))


def test_the_path_order_error_is_zero_for_the_truth_in_any_order(shake):
    for estimate in (shake, shake[::-1], shake[np.random.default_rng(1).permutation(25)]):
        assert metrics.path_order_error(estimate, shake, HEIGHT, WIDTH) == pytest.approx(0.0, abs=1e-9)


def test_the_path_order_error_counts_poses_off_the_path(shake):
    """Noise that keeps the set near the truth but breaks its order costs more in path order than matched."""
    noisy = shake + 0.004 * np.random.default_rng(3).standard_normal(shake.shape)
    matched = metrics.trajectory_error(noisy, shake, HEIGHT, WIDTH)
    in_order = metrics.path_order_error(noisy, shake, HEIGHT, WIDTH)
    assert in_order > matched > 0
    with pytest.raises(ValueError, match="differ in length"):
        metrics.path_order_error(shake[:24], shake, HEIGHT, WIDTH)


def test_reference_points_are_the_corners_and_the_principal_point():
    points = metrics.reference_points(HEIGHT, WIDTH)
    assert points.tolist() == [[0, 0], [WIDTH - 1, 0], [0, HEIGHT - 1], [WIDTH - 1, HEIGHT - 1], [32.0, 22.5]]


def test_trajectory_metrics_refuse_bad_shapes(shake):
    with pytest.raises(ValueError, match="Px3"):
        metrics.trajectory_error(shake[:, :2], shake, HEIGHT, WIDTH)
    with pytest.raises(ValueError, match="differ in length"):
        metrics.trajectory_error(shake[:24], shake, HEIGHT, WIDTH)
    with pytest.raises(ValueError, match="finite"):
        metrics.zero_motion_error(np.full((25, 3), np.nan), HEIGHT, WIDTH)
