"""`python -m experiments.gyro_errors`: the simulated gyroscope gives back the trajectory it was made from, its
errors cost what they should, and the command reports every error."""

import json

import numpy as np

from experiments.gyro_errors import ERRORS, EXPOSURE_S, GyroError, gyro_log, main
from runtime.core.motion import gyro_trajectory
from runtime.tools import metrics
from tests.runtime.conftest import read_trajectory


def _error(error: GyroError) -> float:
    truth = read_trajectory().astype(np.float64)
    log = gyro_log(truth, error, np.random.default_rng(0))
    poses = gyro_trajectory(log, error.offset_s, EXPOSURE_S + error.offset_s)
    return metrics.trajectory_error(poses, truth, 256, 256, 512.0)


def test_an_exact_gyroscope_gives_the_trajectory_back_and_errors_move_it_away():
    exact = _error(GyroError())
    assert exact < 0.1  # px at f = 512: the rates' linear interpolation between poses, sampled at 1 kHz
    biases = [_error(GyroError(bias_deg_s=bias)) for bias in (2.0, 5.0, 10.0)]
    offsets = [_error(GyroError(offset_s=offset)) for offset in (0.002, 0.005, 0.010)]
    assert exact < biases[0] < biases[1] < biases[2]
    assert exact < offsets[0] < offsets[1] < offsets[2]


def test_every_error_is_restored_and_reported(small_bundle, pairs, tmp_path, capsys):
    assert main(["--engine", str(small_bundle), "--pairs", str(pairs), "--limit", "1", "--out", str(tmp_path)]) == 0
    stdout = capsys.readouterr().out
    assert (tmp_path / "gyro_errors.md").read_text() == stdout
    (figures,) = json.loads((tmp_path / "gyro_errors.json").read_text()).values()
    assert list(figures) == ["trajectory net (blind)", *ERRORS]
    assert all(row["trajectory_error_px"] >= 0 and np.isfinite(row["psnr_gain_db"]) for row in figures.values())
    for name in ERRORS:
        assert f"| {name} |" in stdout
