"""`models.make_pairs`: evaluation folders from sharp images and the recorded trajectories in ../shared."""

import functools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from models import make_pairs
from models.make_pairs import PairsError, main, pmbm_blur
from tests import conftest
from tests.runtime.conftest import read_trajectory, smooth_bgr8

CROP = 40
RECORDED = ("000000000009_0.txt", "000000000110_0.txt")


@pytest.fixture(scope="module")
def trajectories() -> list[Path]:
    return [conftest.shared_file(f"data/trajectories/{name}") for name in RECORDED]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sources") / "scene.png"
    cv2.imwrite(str(path), smooth_bgr8(70, 90, seed=5))
    return path


#: `python -m models.make_pairs` in this process: (exit code, stdout, stderr).
run = functools.partial(conftest.run, main)


def read_rgb(path: Path) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert data is not None and data.dtype == np.uint8 and data.shape[2] == 3, path
    return data[..., ::-1]


def test_the_trajectory_reader_matches_the_recorded_files(trajectories):
    for path in trajectories:
        poses = make_pairs.read_trajectory(path)
        assert poses.shape == (25, 3)
        assert np.abs(poses.mean(axis=0)).max() < 1e-12  # mean-centred
        # The files hold 25 rows already: resampling keeps them, so the conftest's reader agrees.
        assert np.allclose(poses, read_trajectory(f"data/trajectories/{path.name}"), atol=1e-7)


def test_the_trajectory_reader_refuses_bad_files(tmp_path):
    (tmp_path / "short.txt").write_text("0,0,0,0.1,0.2,0.3\n0,0,0,0.1,0.2\n")
    (tmp_path / "words.txt").write_text("a,b,c,d,e,f\n")
    for name in ("missing.txt", "short.txt", "words.txt"):
        with pytest.raises(PairsError) as caught:
            make_pairs.read_trajectory(tmp_path / name)
        assert str(tmp_path / name) in str(caught.value) and "\n" not in str(caught.value)


def test_a_folder_of_pairs(image, trajectories, tmp_path):
    code, _, stderr = run("--images", image, "--trajectories", *trajectories, "--out", tmp_path, "--crop", CROP)
    assert code == 0, stderr
    entries = json.loads((tmp_path / "pairs.json").read_text())
    assert [entry["name"] for entry in entries] == [f"scene_{Path(name).stem}" for name in RECORDED]
    assert stderr.count("\n") == 3  # a progress line per pair and a summary
    for entry, trajectory in zip(entries, trajectories, strict=True):
        assert {"name", "blurry", "sharp", "focal_length", "trajectory"} <= set(entry)
        assert entry["focal_length"] == CROP  # the reference's default: the longer side
        assert np.array_equal(entry["trajectory"], make_pairs.read_trajectory(trajectory))
        sharp, blurry = read_rgb(tmp_path / entry["sharp"]), read_rgb(tmp_path / entry["blurry"])
        assert sharp.shape == blurry.shape == (CROP, CROP, 3)
        # The sharp picture is the crop of the source named in the entry.
        x, y = entry["crop_origin_xy"]
        assert np.array_equal(sharp, read_rgb(image)[y : y + CROP, x : x + CROP])
        assert np.abs(blurry.astype(float) - sharp).mean() > 1  # blurred (and noisy)
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_the_blurry_image_is_the_reference_blur_of_the_sharp_one(image, trajectories, tmp_path):
    """Without noise, away from the borders (where the margin supplied real pixels) blurry = PMBM(sharp) in 8 bits."""
    assert (
        run("--images", image, "--trajectories", trajectories[1], "--out", tmp_path, "--crop", CROP, "--noise", 0)[0]
        == 0
    )
    entry = json.loads((tmp_path / "pairs.json").read_text())[0]
    sharp, blurry = read_rgb(tmp_path / entry["sharp"]), read_rgb(tmp_path / entry["blurry"])
    expected = pmbm_blur(sharp.astype(np.float32) / 255, np.array(entry["trajectory"]), entry["focal_length"])
    margin = make_pairs.blur_margin(np.array(entry["trajectory"]), CROP, entry["focal_length"])
    inner = np.s_[margin:-margin, margin:-margin]
    assert margin < CROP // 4
    assert np.abs(blurry[inner] - np.round(expected[inner] * 255)).max() <= 1  # rounding of a float32 blur
    # Near the border the margin made the difference: reflection would not have given these pixels.
    assert np.abs(blurry.astype(float) - np.round(expected * 255)).max() > 1


def test_noise_has_the_requested_sigma(image, trajectories, tmp_path):
    arguments = ["--images", image, "--trajectories", trajectories[0], "--crop", CROP]
    assert run(*arguments, "--out", tmp_path / "clean", "--noise", 0)[0] == 0
    assert run(*arguments, "--out", tmp_path / "noisy", "--noise", 0.02)[0] == 0
    clean = read_rgb(next((tmp_path / "clean").glob("*_blurry.png"))).astype(float) / 255
    noisy = read_rgb(next((tmp_path / "noisy").glob("*_blurry.png"))).astype(float) / 255
    assert np.std(noisy - clean) == pytest.approx(0.02, rel=0.1)


def test_the_same_seed_gives_the_same_folder(image, trajectories, tmp_path):
    arguments = ["--images", image, "--trajectories", *trajectories, "--crop", CROP]
    for folder, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert run(*arguments, "--out", tmp_path / folder, "--seed", seed)[0] == 0

    def contents(folder: str) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in (tmp_path / folder).iterdir()}

    assert contents("a") == contents("b")
    assert contents("a") != contents("c")


def test_focal_length_scales(image, trajectories, tmp_path):
    arguments = ["--images", image, "--trajectories", trajectories[0], "--crop", CROP, "--out", tmp_path]
    assert run(*arguments, "--focal-length-scale", 0.5, 2)[0] == 0
    entries = json.loads((tmp_path / "pairs.json").read_text())
    assert [(entry["name"], entry["focal_length"]) for entry in entries] == [
        ("scene_000000000009_0_f0.5", CROP / 2),
        ("scene_000000000009_0_f2", 2 * CROP),
    ]


@pytest.mark.parametrize(
    "change, message",
    [
        (("--crop", 200), "smaller than the 200 px crop"),
        (("--crop", 16), "--crop must be at least 32"),
        (("--noise", -1), "--noise must be"),
        (("--focal-length-scale", 0), "--focal-length-scale must be positive"),
        (("--images", "nowhere.png"), "nowhere.png: no such file"),
    ],
)
def test_refusals_are_one_line(image, trajectories, tmp_path, change, message):
    arguments = {"--images": image, "--trajectories": trajectories[0], "--crop": CROP, "--out": tmp_path / "out"}
    arguments[change[0]] = change[1]
    code, _, stderr = run(*[item for pair in arguments.items() for item in pair])
    assert code == 2
    assert stderr.startswith("error: ") and message in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "out" / "pairs.json").exists()


def test_duplicate_pair_names_are_refused(image, trajectories, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / image.name).write_bytes(image.read_bytes())
    code, _, stderr = run("--images", image, other / image.name, "--trajectories", trajectories[0], "--out", tmp_path)
    assert code == 2 and "share the pair name scene_000000000009_0" in stderr
