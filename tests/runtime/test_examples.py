"""The examples run as documented."""

import subprocess
import sys
from pathlib import Path

import cv2

from tests.runtime.conftest import video_facts, write_video

ROOT = Path(__file__).resolve().parents[2]


def test_deblur_stream_restores_a_video_file(small_bundle, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", frames=5, fps=12.0)
    command = [
        sys.executable, "examples/deblur_stream.py", "--engine", str(small_bundle), "--backend", "ort-cpu",
        str(clip), str(tmp_path / "restored.mp4"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert video_facts(tmp_path / "restored.mp4") == (5, 12.0, (64, 48))
    assert f"5 frames -> {tmp_path / 'restored.mp4'}" in done.stderr
    assert cv2.VideoCapture(str(clip)).isOpened()  # the input is still there, untouched


def test_deblur_stream_says_what_it_cannot_do(small_bundle, tmp_path):
    script = [sys.executable, "examples/deblur_stream.py"]
    missing = [*script, "--engine", str(small_bundle), str(tmp_path / "missing.mp4"), str(tmp_path / "out.mp4")]
    done = subprocess.run(missing, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == f"error: {tmp_path / 'missing.mp4'}: cannot open\n"
    tiny = write_video(tmp_path / "tiny.mp4", frames=2, size=(32, 24))
    done = subprocess.run(
        [*script, "--engine", str(small_bundle), str(tiny), str(tmp_path / "out.mp4")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "error: image is 32x24; the bundle needs at least 32 px on each side"
    assert not (tmp_path / "out.mp4").exists()
