"""`python -m runtime.evaluate` end to end on pairs made by `models.make_pairs`: reports, numbers, refusals."""

import functools
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.core.backends import BackendSettings
from runtime.tools import metrics
from runtime.tools.evaluate import MEAN_COLUMNS, REFINED_MEAN_COLUMNS, evaluate, main
from runtime.tools.pairs import PairsError, read_pairs
from tests import conftest
from tests.runtime.conftest import CROP, NAMES, smooth_bgr8

ROOT = Path(__file__).resolve().parents[3]


def copy_of(pairs: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pairs, tmp_path / "pairs"))


#: `python -m runtime.evaluate` in this process: (exit code, stdout, stderr).
run = functools.partial(conftest.run, main)


def strict_json(path: Path) -> dict:
    """JSON as a strict parser reads it: NaN and Infinity are not JSON."""
    return json.loads(path.read_text(), parse_constant=lambda token: pytest.fail(f"{path} holds {token}"))


def test_a_whole_evaluation(small_bundle, pairs, tmp_path):
    out = tmp_path / "report"
    code, stdout, stderr = run("--engine", small_bundle, "--pairs", pairs, "--backend", "ort-cpu", "--out", out)
    assert code == 0, stderr
    assert sorted(path.name for path in out.iterdir()) == ["evaluation.json", "evaluation.md", "pictures"]
    assert (out / "evaluation.md").read_text() == stdout
    assert [line.split(":")[0] for line in stderr.splitlines()[:2]] == [f"[1/2] {NAMES[0]}", f"[2/2] {NAMES[1]}"]

    report = strict_json(out / "evaluation.json")
    assert report["backend"] == "ort-cpu" and report["failed"] == []
    rows = report["pairs"]
    assert [row["name"] for row in rows] == NAMES
    for column in MEAN_COLUMNS:
        assert report["mean"][column] == pytest.approx(np.mean([row[column] for row in rows]), rel=1e-12)
    assert report["trajectory_error_ratio_of_means"] == pytest.approx(
        report["mean"]["trajectory_error_px"] / report["mean"]["zero_motion_error_px"]
    )

    listing = json.loads((pairs / "pairs.json").read_text())
    for row, entry in zip(rows, listing, strict=True):
        assert (row["width"], row["height"], row["focal_length"]) == (CROP, CROP, 2.0 * CROP)
        assert row["psnr_gain"] == pytest.approx(row["psnr_restored"] - row["psnr_blurry"])
        assert 15 < row["psnr_blurry"] < 60 and 0 < row["ssim_blurry"] < 1 and row["seconds"] > 0
        assert row["zero_motion_error_px"] > 0.5  # the made-up shakes blur by a pixel or more
        # The reported errors are the metrics' own, of the estimate the report keeps.
        error = metrics.trajectory_error(row["trajectory_estimate"], entry["trajectory"], CROP, CROP, 2.0 * CROP)
        assert row["trajectory_error_px"] == pytest.approx(error, rel=1e-9)
        assert row["error_ratio"] == pytest.approx(error / row["zero_motion_error_px"])
        in_order = metrics.path_order_error(row["trajectory_estimate"], entry["trajectory"], CROP, CROP, 2.0 * CROP)
        assert row["path_order_error_px"] == pytest.approx(in_order, rel=1e-9) and in_order >= error - 1e-9
        # The blurry baseline is measured on the files as written.
        blurry = cv2.imread(str(pairs / entry["blurry"]))[..., ::-1] / 255.0
        sharp = cv2.imread(str(pairs / entry["sharp"]))[..., ::-1] / 255.0
        assert row["psnr_blurry"] == pytest.approx(metrics.psnr(blurry, sharp), rel=1e-6)
        picture = cv2.imread(str(out / row["picture"]))
        assert row["picture"] == f"pictures/{row['name']}.png"
        assert picture.shape[0] == CROP and picture.shape[1] > 3 * CROP  # blurry | restored | sharp
        assert np.array_equal(picture[CROP // 2 :, -CROP:], cv2.imread(str(pairs / entry["sharp"]))[CROP // 2 :])

    table = [line for line in stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 2 + 1  # header, a row per pair, the mean
    assert table[1].startswith(f"| {NAMES[0]} | 48x48 | 96 |") and table[-1].startswith("| **mean** |")
    assert not list(out.rglob(".*"))  # no temporary files left


def test_the_command_prints_the_table_and_writes_the_reports(small_bundle, pairs, tmp_path):
    code, stdout, stderr = run("--engine", small_bundle, "--pairs", pairs, "--out", tmp_path / "out")
    assert code == 0, stderr
    assert "| **mean** |" in stdout
    assert (tmp_path / "out" / "evaluation.json").is_file()


def test_the_api_and_limit_without_an_output_folder(small_bundle, pairs, tmp_path):
    lines: list[str] = []
    evaluation = evaluate(small_bundle, pairs, backend=BackendSettings("ort-cpu"), limit=1, progress=lines.append)
    assert [row.name for row in evaluation.rows] == NAMES[:1] and evaluation.failed == []
    assert evaluation.rows[0].picture is None
    assert evaluation.mean()["psnr_restored"] == evaluation.rows[0].psnr_restored
    assert lines[-1].startswith(f"[1/1] {NAMES[0]}: PSNR ")
    code, stdout, _ = run("--engine", small_bundle, "--pairs", pairs, "--limit", 1)
    assert code == 0 and stdout.count(NAMES[0]) == 1 and NAMES[1] not in stdout
    assert sorted(path.name for path in pairs.iterdir()) == sorted(
        ["pairs.json", *(f"{name}_{kind}.png" for name in NAMES for kind in ("blurry", "sharp"))]
    )


def test_the_trajectory_net_at_a_smaller_side_is_measured_and_said(small_bundle, pairs, tmp_path):
    full = evaluate(small_bundle, pairs, backend=BackendSettings("ort-cpu"), progress=lambda _: None)
    code, stdout, stderr = run(
        "--engine", small_bundle, "--pairs", pairs, "--backend", "ort-cpu", "--estimation-side", 32, "--out", tmp_path
    )
    assert code == 0, stderr
    assert "(ort-cpu, fp32, trajectory net at <= 32 px): 2 pairs" in stdout.splitlines()[0]
    report = strict_json(tmp_path / "evaluation.json")
    assert report["estimation_side"] == 32 and full.to_json()["estimation_side"] is None
    # The 48 px crops are estimated at 32 px: other estimates, measured against the same truth.
    for row, full_row in zip(report["pairs"], full.rows, strict=True):
        assert row["trajectory_estimate"] != full_row.trajectory_estimate
        assert row["zero_motion_error_px"] == full_row.zero_motion_error_px
    assert run("--engine", small_bundle, "--pairs", pairs, "--estimation-side", 8)[0] == 2


def test_a_failing_pair_is_reported_and_the_rest_go_on(small_bundle, pairs, tmp_path):
    folder = copy_of(pairs, tmp_path)
    (folder / f"{NAMES[0]}_sharp.png").unlink()
    out = tmp_path / "out"
    code, stdout, stderr = run("--engine", small_bundle, "--pairs", folder, "--out", out)
    assert code == 1
    missing = str(folder / f"{NAMES[0]}_sharp.png")
    assert f"[1/2] {NAMES[0]}: failed: {missing}: no such file" in stderr
    assert f"failed: {NAMES[0]}: {missing}: no such file" in stderr.splitlines()[-1]
    report = strict_json(out / "evaluation.json")
    assert [row["name"] for row in report["pairs"]] == NAMES[1:]
    assert report["failed"] == [{"name": NAMES[0], "error": f"{missing}: no such file"}]
    assert f"- {NAMES[0]}: {missing}: no such file" in stdout
    assert not (out / "pictures" / f"{NAMES[0]}.png").exists()


def test_sizes_that_differ_fail_the_pair(small_bundle, pairs, tmp_path):
    folder = copy_of(pairs, tmp_path)
    cv2.imwrite(str(folder / f"{NAMES[1]}_sharp.png"), smooth_bgr8(CROP, CROP + 8))
    code, _, stderr = run("--engine", small_bundle, "--pairs", folder)
    assert code == 1
    assert f"failed: {NAMES[1]}: {NAMES[1]}_blurry.png is 48x48 but {NAMES[1]}_sharp.png is 56x48" in stderr


def test_a_pair_without_blur_gives_infinite_psnr_and_no_ratio(small_bundle, pairs, tmp_path):
    """blurry == sharp and zero motion: PSNR inf (null in the JSON, which stays strict), ratio undefined."""
    folder = copy_of(pairs, tmp_path)
    listing = json.loads((folder / "pairs.json").read_text())
    listing[0].update(blurry=listing[0]["sharp"], trajectory=np.zeros((25, 3)).tolist())
    (folder / "pairs.json").write_text(json.dumps(listing))
    out = tmp_path / "out"
    code, stdout, stderr = run("--engine", small_bundle, "--pairs", folder, "--out", out)
    assert code == 0, stderr
    report = strict_json(out / "evaluation.json")
    still = report["pairs"][0]
    assert still["psnr_blurry"] is None and still["ssim_blurry"] == pytest.approx(1.0)
    assert still["zero_motion_error_px"] == 0 and still["error_ratio"] is None
    assert report["mean"]["psnr_blurry"] is None and report["mean"]["error_ratio"] is None
    assert report["trajectory_error_ratio_of_means"] is not None  # the other pair moved
    assert f"| {NAMES[0]} | 48x48 | 96 | inf |" in stdout


def _entry(listing: list, **changes: object) -> list:
    """The listing with its first entry changed; a value of None deletes the key."""
    first = {key: value for key, value in {**listing[0], **changes}.items() if value is not None}
    return [first, *listing[1:]]


BAD_LISTINGS = {
    "not JSON": (lambda listing: "[{", "pairs.json: not valid JSON (Expecting property name"),
    "not a list": (lambda listing: {"pairs": listing}, "pairs.json: expected a non-empty JSON list"),
    "empty": (lambda listing: [], "pairs.json: expected a non-empty JSON list"),
    "entry not an object": (lambda listing: [*listing, 3], "pairs.json: entry [2] is not a JSON object"),
    "missing keys": (
        lambda listing: _entry(listing, sharp=None, trajectory=None),
        "pairs.json: entry [0] ('scene_drift'): missing 'sharp', 'trajectory'",
    ),
    "trajectory shape": (
        lambda listing: _entry(listing, trajectory=listing[0]["trajectory"][:24]),
        "pairs.json: entry [0] ('scene_drift'): trajectory must be 25x3 radians (pitch, yaw, roll), got shape (24, 3)",
    ),
    "ragged trajectory": (
        lambda listing: _entry(listing, trajectory=[[0, 0, 0]] * 24 + [[0, 0]]),
        "trajectory must be 25x3 numbers (radians), got a ragged or non-numeric list",
    ),
    "focal length": (
        lambda listing: _entry(listing, focal_length=-5),
        "entry [0] ('scene_drift'): focal_length must be a positive number of pixels, got -5",
    ),
    "name with a slash": (lambda listing: _entry(listing, name="../x"), "entry [0] ('../x'): name must be"),
    "trajectory of 100 rad": (
        lambda listing: _entry(listing, trajectory=[[0, 100, 0]] * 25),
        "entry [0] ('scene_drift'): trajectory pose 0 yaw: rotation 100 rad is outside -0.785398..0.785398 rad",
    ),
    "trajectory of 1e30 rad": (
        lambda listing: _entry(listing, trajectory=[[0, 0, 0]] * 24 + [[0, 0, -1e30]]),
        "entry [0] ('scene_drift'): trajectory pose 24 roll: rotation -1e+30 rad is outside -0.785398..0.785398 rad",
    ),
    "focal length of 1e30 px": (
        lambda listing: _entry(listing, focal_length=1e30),
        "entry [0] ('scene_drift'): focal_length: focal length 1e+30 px is outside 1..1000000 px",
    ),
    "focal length beyond floats": (
        lambda listing: _entry(listing, focal_length=10**400),
        "entry [0] ('scene_drift'): focal_length must be a positive number of pixels, got 1000000",
    ),
    "blurry up a folder": (
        lambda listing: _entry(listing, blurry="../scene_drift_blurry.png"),
        "entry [0] ('scene_drift'): 'blurry' must be a plain file name in ",
    ),
    "sharp at an absolute path": (
        lambda listing: _entry(listing, sharp="/etc/passwd"),
        "entry [0] ('scene_drift'): 'sharp' must be a plain file name in ",
    ),
    "sharp in a sub-folder": (
        lambda listing: _entry(listing, sharp="sub/scene_drift_sharp.png"),
        "entry [0] ('scene_drift'): 'sharp' must be a plain file name in ",
    ),
    "blurry is ..": (lambda listing: _entry(listing, blurry=".."), "'blurry' must be a plain file name in "),
    "nested too deep": (
        lambda listing: "[" * 40 + "]" * 40,
        "pairs.json: JSON nesting 40 levels is outside 0..32 levels",
    ),
    "nested beyond the parser": (
        lambda listing: "[" * 100_000 + "]" * 100_000,
        "pairs.json: JSON nested too deep to parse; JSON nesting must be within 0..32 levels",
    ),
    "duplicate names": (
        lambda listing: _entry(listing, name=listing[1]["name"]),
        "pairs.json: entry [1] ('scene_wobble'): the name is used by an earlier entry",
    ),
}


@pytest.mark.parametrize("case", BAD_LISTINGS)
def test_a_bad_pairs_json_is_refused_in_one_line(small_bundle, pairs, tmp_path, case):
    folder = copy_of(pairs, tmp_path)
    change, message = BAD_LISTINGS[case]
    changed = change(json.loads((folder / "pairs.json").read_text()))
    (folder / "pairs.json").write_text(changed if isinstance(changed, str) else json.dumps(changed))
    code, stdout, stderr = run("--engine", small_bundle, "--pairs", folder, "--out", tmp_path / "out")
    assert code == 2 and stdout == ""
    assert stderr.startswith(f"error: {folder / 'pairs.json'}: ") and stderr.count("\n") == 1
    assert message in stderr
    assert not (tmp_path / "out" / "evaluation.json").exists()


def test_pairs_images_may_not_lead_out_of_the_pairs_folder(pairs, tmp_path):
    """A name that is a link to a file elsewhere is refused before it is read; a link within the folder is fine."""
    folder = copy_of(pairs, tmp_path)
    outside = tmp_path / "elsewhere.png"
    shutil.copy(folder / f"{NAMES[0]}_sharp.png", outside)
    listing = json.loads((folder / "pairs.json").read_text())
    (folder / "linked.png").symlink_to(outside)
    (folder / "pairs.json").write_text(json.dumps(_entry(listing, sharp="linked.png")))
    with pytest.raises(PairsError) as caught:
        read_pairs(folder)
    message = str(caught.value)
    assert (
        message
        == f"{folder / 'pairs.json'}: entry [0] ('{NAMES[0]}'): 'sharp' 'linked.png' is a link leading outside {folder}"
    )
    (folder / "linked.png").unlink()
    (folder / "linked.png").symlink_to("linked.png")
    with pytest.raises(PairsError, match=r"'sharp' 'linked.png' cannot be resolved in .* \(Symlink loop from"):
        read_pairs(folder)
    (folder / "linked.png").unlink()
    (folder / "linked.png").symlink_to(folder / f"{NAMES[0]}_sharp.png")
    assert read_pairs(folder)[0].sharp == folder / "linked.png"


def test_a_pairs_json_over_16_mib_is_refused_unread(pairs, tmp_path):
    folder = copy_of(pairs, tmp_path)
    (folder / "pairs.json").write_bytes(b" " * (16 * 2**20 + 1))
    with pytest.raises(PairsError) as caught:
        read_pairs(folder)
    expected = "the pairs listing: file size 16777217 bytes is outside 0..16777216 bytes"
    assert str(caught.value) == f"{folder / 'pairs.json'}: {expected}"


def test_missing_inputs_are_refused_in_one_line(small_bundle, pairs, tmp_path):
    code, _, stderr = run("--engine", small_bundle, "--pairs", tmp_path / "nowhere")
    assert code == 2
    assert (
        stderr
        == f"error: {tmp_path / 'nowhere' / 'pairs.json'}: no such file ({tmp_path / 'nowhere'} is not a folder)\n"
    )
    code, _, stderr = run("--engine", tmp_path, "--pairs", pairs)
    assert code == 2 and stderr.startswith("error: ") and "not a bundle" in stderr and stderr.count("\n") == 1
    code, _, stderr = run("--engine", small_bundle, "--pairs", pairs, "--limit", 0)
    assert code == 2 and stderr == "error: --limit must be at least 1, got 0\n"


def test_refined_and_unrefined_figures_side_by_side(small_bundle, pairs, tmp_path):
    out = tmp_path / "report"
    arguments = ["--engine", small_bundle, "--pairs", pairs, "--backend", "ort-cpu", "--out", out]
    code, stdout, stderr = run(*arguments, "--refine", 5, "--refine-rerun")
    assert code == 0, stderr
    assert "; refined: trajectory " in stderr.splitlines()[0]
    report = strict_json(out / "evaluation.json")
    listing = json.loads((pairs / "pairs.json").read_text())
    for row, entry in zip(report["pairs"], listing, strict=True):
        refined = row["refined"]
        assert refined["reblur_loss_after"] <= refined["reblur_loss_before"]
        error = metrics.trajectory_error(refined["trajectory_estimate"], entry["trajectory"], CROP, CROP, 2.0 * CROP)
        assert refined["trajectory_error_px"] == pytest.approx(error, rel=1e-9)
        assert refined["psnr_gain"] == pytest.approx(refined["psnr_restored"] - row["psnr_blurry"])
        assert refined["seconds"] > 0
    for column in REFINED_MEAN_COLUMNS:
        expected = np.mean([row["refined"][column] for row in report["pairs"]])
        assert report["refined_mean"][column] == pytest.approx(expected, rel=1e-12)
    assert "With trajectory refinement (unrefined -> refined):" in stdout
    table = stdout.split("With trajectory refinement")[1]
    assert sum(line.startswith("| ") for line in table.splitlines()) == 1 + 2 + 1
    # Without --refine nothing is refined and the report says nothing about it.
    code, stdout, _ = run("--engine", small_bundle, "--pairs", pairs, "--backend", "ort-cpu", "--limit", 1)
    assert code == 0 and "refinement" not in stdout


def test_refine_options_without_refine_are_refused(small_bundle, pairs):
    code, _, stderr = run("--engine", small_bundle, "--pairs", pairs, "--refine-rerun")
    assert code == 2 and stderr.strip() == "error: --refine-rerun needs --refine"
