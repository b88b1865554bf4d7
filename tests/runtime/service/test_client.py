"""`python -m runtime.client` against a real server: the results `python -m runtime.deblur` writes for the same
inputs, failed inputs reported while the rest go on, and its exit codes."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.io.deblur import main as deblur_main
from runtime.io.sources import expand
from runtime.io.stopping import StopRequest
from runtime.service.client import main as client_main
from runtime.service.client import run as client_run
from runtime.service.connection import Connection
from runtime.service.process import free_ports
from tests.conftest import run
from tests.runtime.conftest import smooth_bgr8, video_facts, write_video
from tests.runtime.service.conftest import DEMO, serving

pytest.importorskip("tritonclient.http")

HEIGHT, WIDTH = 48, 64
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with two model instances, which the client's concurrent requests keep busy."""
    with serving(tmp_path_factory.mktemp("server") / "server.log", "--instances", "2") as started:
        yield started


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of the formats runtime.deblur reads, a video, and two inputs that fail."""
    folder = tmp_path_factory.mktemp("inputs")
    picture = smooth_bgr8(HEIGHT, WIDTH, seed=4)
    cv2.imwrite(str(folder / "photo.png"), picture)
    cv2.imwrite(str(folder / "deep.png"), picture.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "rgba.png"), np.dstack([picture, np.full((HEIGHT, WIDTH), 200, np.uint8)]))
    cv2.imwrite(str(folder / "tiny.png"), smooth_bgr8(16, 16))
    (folder / "broken.jpg").write_bytes(b"not a picture")
    write_video(folder / "clip.mp4", frames=4, fps=12.0, size=(WIDTH, HEIGHT))
    return folder


@pytest.fixture(scope="module")
def served_batch(server, inputs, tmp_path_factory):
    outdir = tmp_path_factory.mktemp("served")
    code, _, stderr = run(client_main, "--url", server.http_url, "--concurrency", "3", inputs, "-o", outdir)
    return code, stderr, outdir


def test_failed_inputs_are_reported_and_the_rest_done(server, served_batch, inputs):
    code, stderr, outdir = served_batch
    assert code == 1
    assert "5 done, 2 failed" in stderr
    assert f"failed: {inputs / 'broken.jpg'}: not a readable image" in stderr
    assert f"failed: {inputs / 'tiny.png'}: image: 16x16 is too small; the bundle needs at least 32 px" in stderr
    assert sorted(p.name for p in outdir.iterdir()) == ["clip", "deep", "gray", "photo", "rgba"]
    assert not list(outdir.rglob(".*"))  # no temporary file left behind
    assert "(2 instance(s), batches of up to 4)" in server.log.read_text()


@pytest.mark.parametrize(
    "name, dtype, shape",
    [
        ("photo", np.uint8, (HEIGHT, WIDTH, 3)),
        ("deep", np.uint16, (HEIGHT, WIDTH, 3)),
        ("gray", np.uint8, (HEIGHT, WIDTH)),
        ("rgba", np.uint8, (HEIGHT, WIDTH, 4)),
    ],
)
def test_each_image_gets_its_restored_image_and_trajectory(served_batch, name, dtype, shape):
    folder = served_batch[2] / name
    restored = cv2.imread(str(folder / "restored.png"), cv2.IMREAD_UNCHANGED)
    assert restored.dtype == dtype and restored.shape == shape
    if name == "rgba":
        assert (restored[..., 3] == 200).all()
    description = json.loads((folder / "trajectory.json").read_text())
    assert np.asarray(description["poses"]).shape == (25, 3)
    assert description["focal_length_px"] == WIDTH and description["image_size"] == {"width": WIDTH, "height": HEIGHT}
    with open(folder / "trajectory.csv") as table:
        rows = list(csv.reader(table))
    assert rows[0] == ["pose", "pitch_rad", "yaw_rad", "roll_rad", "focal_length_px", "width_px", "height_px"]
    assert len(rows) == 26 and rows[1][4:] == [f"{float(WIDTH)}", str(WIDTH), str(HEIGHT)]


def test_a_video_gets_its_restored_video_and_trajectories(served_batch):
    folder = served_batch[2] / "clip"
    assert video_facts(folder / "restored.mp4") == (4, 12.0, (WIDTH, HEIGHT))
    with open(folder / "trajectories.csv") as table:
        rows = list(csv.reader(table))
    assert rows[0] == ["frame", "pose", "pitch_rad", "yaw_rad", "roll_rad", "focal_length_px"]
    assert len(rows) == 1 + 4 * 25 and [row[0] for row in rows[1::25]] == ["0", "1", "2", "3"]


def test_the_results_match_runtime_deblurs(served_batch, inputs, tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(inputs / "photo.png", tmp_path / "in" / "photo.png")
    code, _, stderr = run(
        deblur_main, "--engine", DEMO, "--backend", "ort-cpu", "--threads", "1", tmp_path / "in", "-o", tmp_path
    )
    assert code == 0, stderr
    served, local = served_batch[2] / "photo", tmp_path / "photo"
    difference = cv2.imread(str(served / "restored.png")).astype(int) - cv2.imread(str(local / "restored.png"))
    assert np.abs(difference).max() <= 1
    served_json, local_json = (json.loads((folder / "trajectory.json").read_text()) for folder in (served, local))
    np.testing.assert_allclose(served_json.pop("poses"), local_json.pop("poses"), atol=1e-5)
    common = set(served_json) & set(local_json) - {"timings_s"}
    assert {key: served_json[key] for key in common} == {key: local_json[key] for key in common}
    served_rows, local_rows = (
        np.loadtxt(folder / "trajectory.csv", delimiter=",", skiprows=1) for folder in (served, local)
    )
    np.testing.assert_allclose(served_rows, local_rows, atol=1e-5)


def test_all_done_over_grpc_is_exit_code_0(server, inputs, tmp_path):
    code, _, stderr = run(client_main, "--url", server.grpc_url, "--grpc", inputs / "photo.png", "-o", tmp_path)
    assert code == 0, stderr
    assert "1 done, 0 failed" in stderr and (tmp_path / "photo" / "restored.png").is_file()


def test_nothing_starts_without_a_server_or_a_place_for_results(server, inputs, tmp_path):
    (port,) = free_ports(1)
    code, _, stderr = run(client_main, "--url", f"127.0.0.1:{port}", inputs / "photo.png", "-o", tmp_path / "a")
    assert code == 2 and stderr.startswith(f"error: http://127.0.0.1:{port}: ") and len(stderr.splitlines()) == 1
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("")
    code, _, stderr = run(client_main, "--url", server.http_url, inputs / "photo.png", "-o", tmp_path / "file")
    assert code == 2 and "cannot create the output folder" in stderr
    code, _, stderr = run(client_main, "--url", server.http_url, "--concurrency", "0", inputs, "-o", tmp_path)
    assert code == 2 and stderr == "error: --concurrency must be at least 1, got 0\n"


def test_the_example_client_deblurs_one_image(server, inputs, tmp_path):
    command = [sys.executable, "examples/triton_client.py", inputs / "photo.png", tmp_path / "out.png", server.http_url]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "trajectory (1, 25, 3)\n"
    assert cv2.imread(str(tmp_path / "out.png")).shape == (HEIGHT, WIDTH, 3)


def test_a_stop_skips_what_is_left_and_keeps_nothing_of_the_input_at_hand(server, inputs, tmp_path):
    sources, _ = expand([str(inputs / name) for name in ("photo.png", "gray.png", "rgba.png")])
    stop = StopRequest()
    said: list[str] = []

    def progress(text: str) -> None:
        said.append(text)
        stop.request(signal.SIGTERM)  # as the handler does when SIGTERM comes after the first input

    summary = client_run(Connection(server.http_url), sources, tmp_path, 1, progress, stop)
    assert summary.done == ["photo"] and summary.failed == [] and summary.skipped == ["gray", "rgba"]
    assert summary.interrupted == "SIGTERM" and said == ["[1/3] photo done"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo"]


def test_sigterm_stops_the_command_with_exit_code_143(server, inputs, tmp_path):
    for number in range(4):
        cv2.imwrite(str(tmp_path / f"big{number}.png"), smooth_bgr8(256, 256, seed=number))
    command = [sys.executable, "-m", "runtime.client", "--url", server.http_url, *(
        str(tmp_path / f"big{number}.png") for number in range(4)
    ), "-o", str(tmp_path / "out")]  # fmt: skip
    client = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert client.stderr is not None
    first = client.stderr.readline()
    client.send_signal(signal.SIGTERM)  # while the second image is being restored
    rest = client.stderr.read()
    assert client.wait(60) == 143, first + rest
    assert first == "[1/4] big0 done\n"
    assert "interrupted by SIGTERM: 1 done, 0 failed, 3 skipped" in rest
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["big0"]
