"""`python -m runtime.sensitivity`: the restoration swept from the true trajectory to the estimate, on pairs."""

import functools
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.core.backends import BackendSettings
from runtime.core.deblurrer import Deblurrer
from runtime.io.deblur import DEMO_BUNDLE
from runtime.io.media import read_image
from runtime.tools import metrics
from runtime.tools.pairs import read_pairs
from runtime.tools.sensitivity import main, sensitivity
from tests import conftest
from tests.runtime.conftest import NAMES

#: `python -m runtime.sensitivity` in this process: (exit code, stdout, stderr).
run = functools.partial(conftest.run, main)


def test_a_whole_sweep(small_bundle, pairs, tmp_path):
    out = tmp_path / "report"
    code, stdout, stderr = run(
        "--engine", small_bundle, "--pairs", pairs, "--blends", "0,0.5,1", "--scales", "1,0.5", "--out", out
    )
    assert code == 0, stderr
    assert sorted(path.name for path in out.iterdir()) == ["sensitivity.json", "sensitivity.md", "sensitivity.png"]
    assert (out / "sensitivity.md").read_text() == stdout
    assert cv2.imread(str(out / "sensitivity.png")).shape[2] == 3
    report = json.loads((out / "sensitivity.json").read_text())
    assert [sweep["name"] for sweep in report["pairs"]] == NAMES and report["failed"] == []
    for sweep, pair in zip(report["pairs"], read_pairs(pairs), strict=True):
        points = {(point["kind"], point["value"]): point for point in sweep["points"]}
        assert list(points) == [("blend", 0), ("blend", 0.5), ("blend", 1), ("scale", 1), ("scale", 0.5)]
        assert points["blend", 0]["trajectory_error_px"] == 0
        # The estimate with its poses matched is the same set of poses: the same error and the same restoration.
        assert points["blend", 1]["trajectory_error_px"] == pytest.approx(points["scale", 1]["trajectory_error_px"])
        assert points["blend", 1]["psnr_restored"] == pytest.approx(points["scale", 1]["psnr_restored"], abs=1e-3)
        assert sweep["zero_motion_error_px"] == pytest.approx(
            metrics.zero_motion_error(pair.trajectory, 48, 48, pair.focal_length)
        )
    for index, mean in enumerate(report["mean"]):
        values = [sweep["points"][index]["psnr_gain"] for sweep in report["pairs"]]
        assert mean["psnr_gain"] == pytest.approx(np.mean(values), rel=1e-12)


def test_blend_zero_restores_with_the_true_trajectory(small_bundle, pairs):
    report = sensitivity(
        small_bundle, pairs, blends=(0.0,), backend=BackendSettings("ort-cpu"), limit=1, progress=lambda _: None
    )
    pair = read_pairs(pairs)[0]
    blurry, sharp = read_image(pair.blurry).rgb, read_image(pair.sharp).rgb
    with Deblurrer(small_bundle, BackendSettings("ort-cpu"), log=lambda _: None) as deblurrer:
        restored = deblurrer.restore(blurry, pair.focal_length, pair.trajectory.astype(np.float32)).restored
    (point,) = report.pairs[0].points
    assert point.psnr_restored == pytest.approx(metrics.psnr(np.clip(restored, 0, 1), sharp), abs=1e-6)


def test_a_failing_pair_is_reported_and_the_rest_go_on(small_bundle, pairs, tmp_path):
    folder = Path(shutil.copytree(pairs, tmp_path / "pairs"))
    (folder / f"{NAMES[0]}_blurry.png").unlink()
    code, stdout, stderr = run("--engine", small_bundle, "--pairs", folder, "--blends", "0,1")
    assert code == 1
    assert "1 failed" in stdout and f"failed: {NAMES[0]}: " in stderr and "_blurry.png" in stderr
    assert f"[2/2] {NAMES[1]}: b=0: 0.00 px" in stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(("--blends", ""), "nothing to sweep"), (("--limit", "0"), "--limit must be at least 1")],
)
def test_nothing_to_do_is_refused_in_one_line(small_bundle, pairs, arguments, message):
    code, _, stderr = run("--engine", small_bundle, "--pairs", pairs, *arguments)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("value", "message"), [("0,x", "comma-separated numbers"), ("nan", "finite numbers")])
def test_numbers_that_are_not_are_refused(small_bundle, pairs, capsys, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--engine", str(small_bundle), "--pairs", str(pairs), "--scales", value])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_pairs_file_is_refused(small_bundle, tmp_path):
    code, _, stderr = run("--engine", small_bundle, "--pairs", tmp_path)
    assert code == 2 and f"{tmp_path / 'pairs.json'}: no such file" in stderr


@pytest.mark.skipif(not DEMO_BUNDLE.is_dir(), reason="no demo bundle shipped in runtime/bundles/demo")
def test_the_demo_restoration_gains_most_with_the_true_trajectory(held_out_pair):
    """Real content, a recorded shake, the shipped nets: the true trajectory restores best, and the gain falls as
    the trajectory moves towards the estimate."""
    report = sensitivity(
        DEMO_BUNDLE, held_out_pair, blends=(0.0, 0.5, 1.0), backend=BackendSettings("ort-cpu"), progress=lambda _: None
    )
    truth, half, estimate = (point.psnr_gain for point in report.mean())
    assert truth > 1.0 and truth > half > estimate


def test_a_pair_without_blur_keeps_the_json_strict(small_bundle, pairs, tmp_path):
    """blurry == sharp: infinite PSNR, so its gains are not numbers: null in the JSON; the chart leaves them out."""
    folder = Path(shutil.copytree(pairs, tmp_path / "pairs"))
    listing = json.loads((folder / "pairs.json").read_text())
    listing[0].update(blurry=listing[0]["sharp"])
    (folder / "pairs.json").write_text(json.dumps(listing))
    out = tmp_path / "out"
    code, stdout, stderr = run("--engine", small_bundle, "--pairs", folder, "--blends", "0,1", "--out", out)
    assert code == 0, stderr
    report = json.loads((out / "sensitivity.json").read_text(), parse_constant=lambda token: pytest.fail(token))
    assert report["pairs"][0]["psnr_blurry"] is None and report["mean"][0]["psnr_gain"] is None
    assert "sensitivity.png: not written (no points to draw)" in stderr and "| 0 |" in stdout
