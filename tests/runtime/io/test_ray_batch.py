"""`python -m runtime.deblur --ray`: a batch spread over a real local Ray cluster gives the plain run's results,
failure lines, exit codes and summary; `--skip-done` (the default on Ray) leaves complete results alone in both;
Ctrl-C and SIGTERM stop handing inputs out; without Ray the option is one line."""

import functools
import json
import re
import shutil
import signal
import socket
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.io.deblur import DEMO_BUNDLE, main
from tests import conftest
from tests.runtime.conftest import deblur_until_signalled, smooth_bgr8

ROOT = Path(__file__).resolve().parents[3]
IMAGE_OUTPUTS = ("restored.png", "reblurred.png", "trajectory.json", "trajectory.csv", "kernels.png", "trajectory.png")
NAMES = ("first", "second", "third")
COMMON = ["--engine", DEMO_BUNDLE, "--backend", "ort-cpu", "--threads", 1]
ON_RAY = ["--ray", "local", "--workers", 2]

#: `python -m runtime.deblur` in this process: (exit code, stdout, stderr).
run = functools.partial(conftest.run, main)


def snapshot(folder: Path) -> dict[Path, tuple[bytes, int]]:
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in folder.rglob("*") if path.is_file()}


def leftovers(outdir: Path) -> list[Path]:
    """Temporary files or folders under `outdir`: hidden ones, `.tmp` or `.old`."""
    return [p for p in outdir.rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".old")]


def lines(stderr: str, start: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(start)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three small photos and a file that is no image, in a folder (sorted: broken first)."""
    folder = tmp_path_factory.mktemp("photos")
    for seed, name in enumerate(NAMES):
        cv2.imwrite(str(folder / f"{name}.png"), smooth_bgr8(64, 80, seed=seed))
    (folder / "broken.png").write_bytes(b"no picture in here")
    return folder


@pytest.fixture(scope="module")
def both(photos, tmp_path_factory) -> dict[str, tuple[int, str, str, Path]]:
    """The photos deblurred plainly and on a local Ray cluster of two workers: (exit code, stdout, stderr, outdir)
    for each, by "plain" and "ray"."""
    pytest.importorskip("ray")
    runs = {}
    for kind, extra in (("plain", []), ("ray", ON_RAY)):
        outdir = tmp_path_factory.mktemp(kind) / "out"
        runs[kind] = (*run(*COMMON, *extra, "-o", outdir, photos), outdir)
    return runs


def test_a_ray_batch_reports_as_the_plain_run(both, photos):
    for kind, (code, stdout, stderr, outdir) in both.items():
        assert code == 1, (kind, stderr)
        assert len(lines(stderr, "3 done, 1 failed in ")) == 1, (kind, stderr)
        assert lines(stderr, "failed: ") == [
            f"failed: {photos / 'broken.png'}: not a readable image (corrupt, empty or not an image format OpenCV "
            "reads)"
        ], kind
        assert sorted(p.name for p in outdir.iterdir()) == sorted(NAMES) and not leftovers(outdir), kind
        assert stdout == ""


def test_a_ray_batch_writes_the_plain_runs_results(both):
    plain, on_ray = both["plain"][3], both["ray"][3]
    for name in NAMES:
        assert sorted(p.name for p in (on_ray / name).iterdir()) == sorted(IMAGE_OUTPUTS)
        for picture in ("restored.png", "reblurred.png"):
            expected = cv2.imread(str(plain / name / picture), cv2.IMREAD_UNCHANGED).astype(int)
            written = cv2.imread(str(on_ray / name / picture), cv2.IMREAD_UNCHANGED).astype(int)
            assert written.shape == expected.shape and np.abs(written - expected).max() <= 1, (name, picture)
        expected, written = (json.loads((folder / name / "trajectory.json").read_text()) for folder in (plain, on_ray))
        np.testing.assert_allclose(written.pop("poses"), expected.pop("poses"), atol=1e-5, rtol=0)
        assert abs(written.pop("focal_length_px") - expected.pop("focal_length_px")) <= 1e-5
        assert written.keys() == expected.keys()
        del written["timings_s"], expected["timings_s"]
        assert written == expected, name


def test_a_ray_rerun_leaves_the_inputs_done_and_retries_the_failed_one(both, photos, tmp_path):
    """On Ray `--skip-done` is the default: a cluster batch resumes."""
    outdir = Path(shutil.copytree(both["ray"][3], tmp_path / "out"))
    before = snapshot(outdir)

    code, _, stderr = run(*COMMON, *ON_RAY, "-o", outdir, photos)

    assert code == 1, stderr
    assert len(lines(stderr, "0 done, 3 already done, 1 failed in ")) == 1, stderr
    assert lines(stderr, "already done: ") == [f"already done: {outdir / name}" for name in sorted(NAMES)]
    assert len(lines(stderr, f"failed: {photos / 'broken.png'}: ")) == 1
    assert snapshot(outdir) == before and not leftovers(outdir)  # not a byte or a timestamp changed


def test_a_worker_that_cannot_load_the_bundle_is_the_plain_runs_refusal_naming_its_machine(photos, tmp_path):
    """TensorRT is not installed where these tests run: the plain run refuses `--backend tensorrt` as the
    Deblurrer loads; on Ray each worker loads its own, and the first refusal stops the run the same way."""
    pytest.importorskip("ray")
    arguments = ["--engine", DEMO_BUNDLE, "--backend", "tensorrt", photos / f"{NAMES[0]}.png"]
    code, _, stderr = run(*arguments, "-o", tmp_path / "plain")
    if code == 0:
        pytest.skip("TensorRT runs here")
    assert code == 2 and len(lines(stderr, "error: ")) == 1, stderr
    refusal = lines(stderr, "error: ")[0].removeprefix("error: ")

    code, stdout, stderr = run(*arguments, *ON_RAY, "-o", tmp_path / "ray")

    assert (code, stdout) == (2, "")
    assert lines(stderr, "error: ") == [f"error: a Ray worker on {socket.gethostname()} cannot run: {refusal}"]
    assert list((tmp_path / "ray").iterdir()) == []


def test_skip_done_leaves_complete_results_and_redoes_incomplete_ones(photos, tmp_path):
    """The plain run's rule, which `--ray` shares: complete means every file this run writes is there."""
    outdir = tmp_path / "out"
    first = photos / f"{NAMES[0]}.png"
    assert run(*COMMON, "-o", outdir, first)[0] == 0
    before = snapshot(outdir)

    code, _, stderr = run(*COMMON, "--skip-done", "-o", outdir, first)
    assert code == 0, stderr
    assert len(lines(stderr, "0 done, 1 already done, 0 failed in ")) == 1
    assert lines(stderr, "already done: ") == [f"already done: {outdir / NAMES[0]}"]
    assert snapshot(outdir) == before

    code, _, stderr = run(*COMMON, "--skip-done", "--sequence", "-o", outdir, first)  # no sharp frames yet
    assert code == 0, stderr
    assert len(lines(stderr, "1 done, 0 failed in ")) == 1 and not lines(stderr, "already done: ")
    assert (outdir / NAMES[0] / "frames" / "frame_24.png").is_file() and (outdir / NAMES[0] / "sequence.mp4").is_file()

    (outdir / NAMES[0] / "kernels.png").unlink()
    code, _, stderr = run(*COMMON, "--skip-done", "-o", outdir, first)
    assert code == 0 and len(lines(stderr, "1 done, 0 failed in ")) == 1, stderr
    assert sorted(p.name for p in (outdir / NAMES[0]).iterdir()) == sorted(IMAGE_OUTPUTS)


def test_ray_not_installed_is_one_line_saying_how_to_install_it(photos, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    outdir = tmp_path / "out"

    code, stdout, stderr = run(*COMMON, *ON_RAY, "-o", outdir, photos)

    assert (code, stdout) == (2, "")
    assert stderr == 'error: --ray needs Ray, which is not installed here: pip install -e ".[ray]"\n'
    assert not outdir.exists()


@pytest.mark.parametrize(
    "arguments, camera, message",
    [
        (["--workers", 2], [], "--workers goes with --ray"),
        (["--ray", "local", "--workers", 0], [], "--workers must be at least 1, got 0"),
        (["--ray", "local"], ["7"], "camera 7: cameras are not read through --ray; run without it"),
    ],
)
def test_refused_before_any_cluster_starts(photos, tmp_path, monkeypatch, arguments, camera, message):
    """A module that is not Ray stands in for it: these are refused before Ray is used."""
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))
    outdir = tmp_path / "out"

    code, stdout, stderr = run(*COMMON, *arguments, "-o", outdir, photos / f"{NAMES[0]}.png", *camera)

    assert (code, stdout, stderr) == (2, "", f"error: {message}\n")
    assert not outdir.exists()


@pytest.mark.parametrize("number, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_handing_inputs_out_and_finishes_those_in_flight(tmp_path, number, code):
    """A real `python -m runtime.deblur --ray local --workers 2` on six photos: the signal comes once the first
    result is in place (SIGTERM to the command; SIGINT to its whole process group, as Ctrl-C in a terminal). The
    inputs in flight (at least the second, taken with the first) are finished whole, the others skipped, and the
    summary says so."""
    pytest.importorskip("ray")
    inputs = tmp_path / "photos"
    inputs.mkdir()
    for seed in range(6):
        cv2.imwrite(str(inputs / f"photo{seed}.png"), smooth_bgr8(256, 256, seed=seed))
    outdir = tmp_path / "out"
    arguments = [*COMMON, "--ray", "local", "--workers", 2, "-o", outdir, inputs]
    returncode, stderr = deblur_until_signalled(arguments, outdir / "photo0", number, group=number == signal.SIGINT)
    assert returncode == code, stderr
    name = signal.Signals(number).name
    pattern = re.compile(rf"interrupted by {name}: (\d) done, 0 failed, (\d) skipped in .*")
    counts = [(int(match[1]), int(match[2])) for match in map(pattern.fullmatch, stderr.splitlines()) if match]
    assert len(counts) == 1, stderr
    done, skipped = counts[0]
    assert done >= 2 and skipped >= 1 and done + skipped == 6, stderr
    assert "Traceback" not in stderr
    folders = sorted(p.name for p in outdir.iterdir())
    assert folders == [f"photo{i}" for i in range(done)] and not leftovers(outdir)
    for folder in folders:
        assert sorted(p.name for p in (outdir / folder).iterdir()) == sorted(IMAGE_OUTPUTS)
