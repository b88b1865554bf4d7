"""The accuracy gate: judged on pairs against the sharp image, or on images against the FP32 output."""

import numpy as np
import pytest

from calibration.gate import MIN_PSNR_VS_FP32, Sample, judge
from runtime.tools import metrics


def outputs(images, trajectory):
    return [(image, trajectory) for image in images]


@pytest.fixture
def pairs():
    rng = np.random.default_rng(0)
    sharp = [rng.random((16, 16, 3)).astype(np.float32) for _ in range(2)]
    truth = np.zeros((25, 3))
    truth[:, 1] = np.linspace(-0.01, 0.01, 25)
    return [Sample(image, 32.0, image, truth) for image in sharp], sharp, truth


def test_on_pairs_the_loss_of_psnr_against_sharp_decides(pairs):
    samples, sharp, truth = pairs
    fp32 = outputs([np.clip(s + 0.01, 0, 1) for s in sharp], truth)
    close = outputs([np.clip(s + 0.0105, 0, 1) for s in sharp], truth)
    far = outputs([np.clip(s + 0.05, 0, 1) for s in sharp], 0 * truth)
    good = judge(fp32, close, samples, 0.5)
    assert good.passed and good.measured_on == "pairs" and 0 < good.loss_db < 0.5
    expected = np.mean([metrics.psnr(o[0], s) for o, s in zip(fp32, sharp, strict=True)])
    assert good.psnr_fp32 == pytest.approx(expected) and good.trajectory_error_fp32 == pytest.approx(0, abs=1e-9)
    bad = judge(fp32, far, samples, 0.5)
    assert not bad.passed and bad.loss_db > 5 and bad.trajectory_error_int8 > 0.1
    assert "loss" in bad.summary and "(max 0.5)" in bad.summary


def test_on_images_the_psnr_against_fp32_decides(pairs):
    _, sharp, truth = pairs
    samples = [Sample(image, 32.0) for image in sharp]
    fp32 = outputs(sharp, truth)
    assert judge(fp32, outputs([s + 0.001 for s in sharp], truth), samples, 0.5).passed  # 60 dB
    failed = judge(fp32, outputs([s + 0.02 for s in sharp], truth), samples, 0.5)  # 34 dB
    assert not failed.passed and failed.measured_on == "images" and failed.psnr_vs_fp32 < MIN_PSNR_VS_FP32
    assert failed.loss_db is None and f"min {MIN_PSNR_VS_FP32}" in failed.summary
