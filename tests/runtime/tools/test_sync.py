"""`runtime.tools.sync`: the rotation between frames from tracked features, and a video's clock offset against a
gyroscope log, found on a made-up shaky video whose frames are motion-blurred as a camera blurs them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.core.backends import BackendSettings
from runtime.core.camera import intrinsics
from runtime.core.deblurrer import Deblurrer
from runtime.core.motion import AXES_SPECS, GyroLog, axes_matrix, exponential, exposure_motion, read_frame_times
from runtime.io.deblur import main as deblur_main
from runtime.io.lens import Lens
from runtime.io.presets import CameraPreset
from runtime.tools.sync import FrameRotation, axes_report, find_offset, frame_rotation, main, video_rotations
from tests.conftest import run
from tests.runtime.conftest import distort

FOCAL, HEIGHT, WIDTH, FPS = 400.0, 240, 320, 30.0
#: Log time of video time 0: what the search must find.
TRUE_OFFSET_S = 0.1537


def _texture() -> np.ndarray:
    """A 480x640 picture with plenty of corners to track (blocks, softened)."""
    blocks = np.random.default_rng(0).random((60, 80)).astype(np.float32)
    return cv2.GaussianBlur(cv2.resize(blocks, (640, 480), interpolation=cv2.INTER_NEAREST), (0, 0), 1.0)


def _shake(duration_s: float = 3.0) -> GyroLog:
    """A made-up hand shake logged at 1 kHz: sums of 0.5-6 Hz sines, ~0.1-0.3 rad/s."""
    rng = np.random.default_rng(1)
    times = np.arange(0.0, duration_s, 0.001)
    rates = np.zeros((len(times), 3))
    for axis, share in enumerate([1.0, 1.0, 0.5]):
        for _ in range(4):
            amplitude, frequency, phase = rng.normal(), rng.uniform(0.5, 6), rng.uniform(0, 2 * np.pi)
            rates[:, axis] += share * 0.15 * amplitude * np.sin(2 * np.pi * frequency * times + phase)
    return GyroLog(times, rates)


def _view(texture: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """The middle 240x320 of the texture as the camera sees it turned by `orientation` (scene: its transpose)."""
    camera = intrinsics(480, 640, FOCAL)
    warped = cv2.warpPerspective(texture, camera @ orientation.T @ np.linalg.inv(camera), (640, 480))
    return warped[120:360, 160:480]


def test_the_rotation_between_two_frames_is_found_from_their_features():
    texture = _texture()
    turn = np.array([0.004, -0.006, 0.003])
    before, after = _view(texture, np.eye(3)), _view(texture, exponential(turn))
    found = frame_rotation(
        np.round(before * 255).astype(np.uint8),
        np.round(after * 255).astype(np.uint8),
        intrinsics(HEIGHT, WIDTH, FOCAL),
    )
    assert found is not None
    np.testing.assert_allclose(found, -turn, atol=2e-4)  # the scene turns against the camera
    flat = np.full((HEIGHT, WIDTH), 128, np.uint8)
    assert frame_rotation(flat, flat, intrinsics(HEIGHT, WIDTH, FOCAL)) is None


@pytest.fixture(scope="module")
def shaky_video(small_bundle, tmp_path_factory) -> Path:
    """60 frames at 30 fps of `_shake`, each exposed for 1/60 s around its log time (the PMBM blur through the
    bundle's sequence graph), written as MP4."""
    texture, log = _texture(), _shake()
    video = tmp_path_factory.mktemp("sync") / "shaky.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    with Deblurrer(small_bundle, BackendSettings("ort-cpu"), log=lambda _: None) as deblurrer:
        for number in range(60):
            middle = number / FPS + TRUE_OFFSET_S
            sharp = np.repeat(_view(texture, log.orientation_at(middle))[..., None], 3, axis=2)
            blur = exposure_motion(log, middle - 1 / 120, 1 / 60)
            frame = deblurrer.reblur(np.ascontiguousarray(sharp), blur, intrinsics(HEIGHT, WIDTH, FOCAL))
            writer.write(np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8))
    writer.release()
    return video


def test_a_blurred_shaky_videos_offset_is_found_within_a_millisecond(shaky_video, tmp_path):
    """The CLI finds the offset and draws the search."""
    log = _shake()
    gyro = tmp_path / "gyro.csv"
    np.savetxt(gyro, np.column_stack([log.times_s, log.angular_velocity]), delimiter=",")
    code, stdout, stderr = run(main, shaky_video, "--gyro", gyro, "--focal-length", FOCAL, "--plot", tmp_path / "s.png")
    assert code == 0, stderr
    offset_ms = float(stdout.split()[1])
    assert abs(offset_ms - 1000 * TRUE_OFFSET_S) < 1.0
    assert "over 59 frame pairs" in stdout and "frame 60/60" in stderr
    assert "--gyro-axes" not in stdout
    assert cv2.imread(str(tmp_path / "s.png")).shape == (420, 760, 3)


def test_the_gyroscopes_mount_is_found_with_the_offset(shaky_video, tmp_path):
    """The same shake logged by a gyroscope turned in the camera (its -z along the camera's x, its x along y, its
    -y along z), as a Gyroflow .gcsv of raw integers (ms, 1e-4 rad/s) whose header states a 10 ms readout:
    `--find-axes` names that mount, clearly, the offset is found as before, and the START printed is the top
    row's."""
    log, mount = _shake(), "-z,x,-y"
    gyro = tmp_path / "turned.gcsv"
    raw_rates = log.angular_velocity @ axes_matrix(mount)  # what in_camera_axes(..., mount) turns back
    table = np.round(np.column_stack([log.times_s * 1000, raw_rates * 10000])).astype(int)
    header = "GYROFLOW IMU LOG\nversion,1.3\nid,test\norientation,YxZ\nframe_readout_time,10\ntscale,0.001\n"
    header += "gscale,0.0001\nt,gx,gy,gz"
    np.savetxt(gyro, table, fmt="%d", delimiter=",", header=header, comments="")
    code, stdout, stderr = run(main, shaky_video, "--gyro", gyro, "--focal-length", FOCAL, "--find-axes")
    assert code == 0, stderr
    assert abs(float(stdout.split()[1]) - 1000 * TRUE_OFFSET_S) < 1.0
    assert f"axes {mount} " in stdout and "not a clear answer" not in stdout
    margin = float(stdout.split("fits ")[1].split("x worse")[0])
    assert margin > 5, stdout  # measured 21.3
    assert f"--gyro-axes {mount} --exposure" in stdout
    start = float(stdout.split("START = ")[1].split()[0])  # the top row's: half the log's 10 ms readout earlier
    assert abs(start - (TRUE_OFFSET_S - 0.005)) < 0.001 and "read out 5 ms after the top one" in stdout
    code, _, stderr = run(main, shaky_video, "--gyro", gyro, "--find-axes", "--gyro-axes", "x,-y,-z")
    assert code == 2 and "leave out --gyro-axes" in stderr


def test_a_video_turning_about_one_axis_does_not_tell_the_mount():
    """Frames panned about the camera's y axis only: every mount with some axis along y fits as well as the true
    one, and the report says the answer is not clear."""
    texture, shake = _texture(), _shake()
    log = GyroLog(shake.times_s, shake.angular_velocity * [0.0, 1.0, 0.0])
    frames = [
        (
            number / FPS,
            np.round(_view(texture, log.orientation_at(number / FPS + TRUE_OFFSET_S)) * 255).astype(np.uint8),
        )
        for number in range(30)
    ]
    sync = find_offset(log, video_rotations(frames, FOCAL), (-0.5, 0.5), AXES_SPECS)
    assert abs(sync.offset_s - TRUE_OFFSET_S) < 0.002
    assert sync.axes.split(",")[1] == "y"  # the one axis the video shows
    assert "not a clear answer" in axes_report(sync), axes_report(sync)


def test_under_a_rolling_shutter_the_offset_found_is_the_middle_rows(tmp_path):
    """The same shake filmed row band by row band (24 bands, each exposed 20 ms * its place later than the top
    one; no blur): the search, which assumes a global shutter, lands near the middle row's time. Measured: 0.3 ms
    early."""
    texture, log = _texture(), _shake()
    readout = 0.020
    edges = np.linspace(0, HEIGHT, 25).astype(int)
    frames = []
    for number in range(60):
        frame = np.empty((HEIGHT, WIDTH), np.float32)
        for top, bottom in zip(edges, edges[1:], strict=False):
            fraction = (top + bottom) / 2 / (HEIGHT - 1)
            time = number / FPS + TRUE_OFFSET_S + readout * (fraction - 0.5)
            frame[top:bottom] = _view(texture, log.orientation_at(time))[top:bottom]
        frames.append((number / FPS, np.round(frame * 255).astype(np.uint8)))
    sync = find_offset(log, video_rotations(frames, FOCAL), (-0.5, 0.5))
    assert abs(sync.offset_s - TRUE_OFFSET_S) < 0.002


@pytest.mark.slow
def test_a_drifting_clock_is_found_and_each_frame_gets_its_exposure_start(tmp_path):
    """20 s at 30 fps (no blur) of a log whose clock runs 300 ppm fast against the video's: `--drift 5` finds the
    drift from four windows, and `--frame-times-out` writes each frame's exposure start in the log's clock (its
    content's instant, less half the exposure and half the readout), as `--frame-times` reads it."""
    texture, log, drift = _texture(), _shake(24.0), 300e-6
    video = tmp_path / "long.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for number in range(600):
        shown = TRUE_OFFSET_S + number / FPS * (1 + drift)
        gray = np.round(_view(texture, log.orientation_at(shown)) * 255).astype(np.uint8)
        writer.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    writer.release()
    gyro, frames, preset = tmp_path / "gyro.csv", tmp_path / "frames.csv", tmp_path / "camera.yaml"
    np.savetxt(gyro, np.column_stack([log.times_s, log.angular_velocity]), delimiter=",")
    preset.write_text(f"focal_length_px: {FOCAL}\nwidth_px: {WIDTH}\nheight_px: {HEIGHT}\n")
    common = [str(video), "--gyro", str(gyro), "--camera", str(preset)]
    timing = ["--exposure-time", "0.01", "--readout-time", "0.004"]
    plot = tmp_path / "drift.png"
    code, stdout, stderr = run(main, *common, "--drift", "5", "--frame-times-out", frames, *timing, "--plot", plot)
    assert code == 0, stderr
    found_ppm = float(stdout.split("clock drift ")[1].split()[0])
    assert abs(found_ppm - 300) < 30, stdout  # measured +302
    assert "4 windows of 5 s" in stdout and f"--camera {preset} --frame-times {frames}" in stdout
    assert cv2.imread(str(plot)).shape == (420, 2 * 760, 3)  # the search, and the drift beside it
    times = read_frame_times(frames)
    shown = TRUE_OFFSET_S + np.arange(600) / FPS * (1 + drift)
    assert len(times.start_s) == 600 and np.all(times.exposure_s == 0.01) and np.all(times.readout_s == 0.004)
    assert np.abs(times.start_s - (shown - 0.005 - 0.002)).max() < 0.001

    for arguments, message in [
        (["--frame-times-out", str(tmp_path / "x.csv")], "--frame-times-out and --exposure-time go together"),
        (["--drift", "0"], "--drift must be a positive number of seconds"),
        (["--drift", "25"], "fewer than two windows of 25 s"),
    ]:
        code, _, stderr = run(main, *common, *arguments)
        lines = [line for line in stderr.splitlines() if not line.startswith("frame ")]
        assert code == 2 and len(lines) == 1 and message in lines[0], stderr
    assert not (tmp_path / "x.csv").exists()


def test_a_lens_that_bends_lines_is_undistorted_before_the_rotations_are_fitted():
    """The made-up shake seen through a barrel-distorting lens (k1 -0.3, k2 0.08; up to 14 px at the corners; no
    blur): the tracked corners no longer move by a homography, unless moved onto the pinhole camera first (a camera
    preset with the lens). Measured: mean mismatch 2.23 mrad as they are, 0.27 mrad undistorted."""
    texture, log = _texture(), _shake()
    lens = Lens("standard", (-0.3, 0.08, 0.0, 0.0), (FOCAL, FOCAL), (WIDTH / 2, HEIGHT / 2), WIDTH, HEIGHT)
    frames = []
    for number in range(60):
        seen = distort(_view(texture, log.orientation_at(number / FPS + TRUE_OFFSET_S)), lens, FOCAL)
        frames.append((number / FPS, np.round(seen * 255).astype(np.uint8)))
    as_they_are = find_offset(log, video_rotations(frames, FOCAL), (-0.5, 0.5))
    undistorted = find_offset(
        log, video_rotations(frames, preset=CameraPreset(FOCAL, WIDTH, HEIGHT, lens)), (-0.5, 0.5)
    )
    assert abs(undistorted.offset_s - TRUE_OFFSET_S) < 0.0005
    assert undistorted.mismatch_rad < 0.5e-3 and as_they_are.mismatch_rad > 4 * undistorted.mismatch_rad


def test_the_options_it_prints_deblur_the_video(small_bundle, tmp_path):
    """The whole known-motion workflow on a made-up clip: filmed through a fisheye lens (a Gyroflow lens profile),
    logged as a .gcsv by a gyroscope mounted `y,-x,z`; `runtime.tools.sync` finds the mount and writes the frame times,
    and the `runtime.deblur` options it prints run as they are."""
    texture, log = _texture(), _shake()
    lens = Lens("fisheye", (0.1, -0.05, 0.02, -0.005), (FOCAL, FOCAL), (WIDTH / 2, HEIGHT / 2), WIDTH, HEIGHT)
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for number in range(60):
        seen = distort(_view(texture, log.orientation_at(number / FPS + TRUE_OFFSET_S)), lens, FOCAL)
        writer.write(cv2.cvtColor(np.round(seen * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR))
    writer.release()
    gyro, profile, frames = tmp_path / "clip.gcsv", tmp_path / "lens.json", tmp_path / "frames.csv"
    table = np.round(np.column_stack([log.times_s * 1000, log.angular_velocity @ axes_matrix("y,-x,z") * 1e4]))
    header = "GYROFLOW IMU LOG\nversion,1.3\nid,test\ntscale,0.001\ngscale,0.0001\nt,gx,gy,gz"
    np.savetxt(gyro, table.astype(int), fmt="%d", delimiter=",", header=header, comments="")
    calibration = {"camera_matrix": lens.camera_matrix(HEIGHT, WIDTH).tolist(), "distortion_coeffs": lens.coefficients}
    profile.write_text(json.dumps({"calib_dimension": {"w": WIDTH, "h": HEIGHT}, "fisheye_params": calibration}))
    arguments = [str(video), "--gyro", str(gyro), "--camera", str(profile), "--find-axes"]
    code, stdout, stderr = run(main, *arguments, "--frame-times-out", frames, "--exposure-time", "0.01")
    assert code == 0, stderr
    assert "axes y,-x,z " in stdout and abs(float(stdout.split()[1]) - 1000 * TRUE_OFFSET_S) < 1.0
    printed = stdout.splitlines()[-1].split()
    assert printed[0] == "runtime.deblur"
    outdir = tmp_path / "out"
    options = ["--engine", str(small_bundle), "--backend", "ort-cpu", "--max-frames", "2", "-o", str(outdir)]
    assert run(deblur_main, video, *printed[1:], *options)[0] == 0
    rows = (outdir / "clip" / "trajectories.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 25


def test_what_cannot_be_synchronised_is_refused_in_one_line(tmp_path):
    log = _shake()
    gyro = tmp_path / "gyro.csv"
    np.savetxt(gyro, np.column_stack([log.times_s, log.angular_velocity]), delimiter=",")
    still = tmp_path / "still.mp4"
    writer = cv2.VideoWriter(str(still), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for _ in range(5):
        writer.write(np.full((HEIGHT, WIDTH, 3), 128, np.uint8))
    writer.release()
    for arguments, message in [
        ([str(still), "--gyro", str(gyro)], "no pair of consecutive frames could be tracked"),
        ([str(tmp_path / "missing.mp4"), "--gyro", str(gyro)], "missing.mp4: cannot open video"),
        ([str(still), "--gyro", str(tmp_path / "none.csv")], "none.csv: cannot read gyroscope log"),
        ([str(still), "--gyro", str(gyro), "--search", "0"], "--search must be a positive number of seconds"),
        ([str(still), "--gyro", str(gyro), "--gyro-axes", "y,x,z"], "axes 'y,x,z' mirror the frame"),
        (
            [str(still), "--gyro", str(gyro), "--focal-length", "1e30"],
            "--focal-length: focal length 1e+30 px is outside 1..1000000 px",
        ),
    ]:
        code, _, stderr = run(main, *arguments)
        assert code == 2
        lines = [line for line in stderr.splitlines() if not line.startswith("frame ")]
        assert len(lines) == 1 and message in lines[0], stderr
    short = GyroLog(np.array([0.0, 0.01]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="does not cover the video shifted by any offset"):
        find_offset(short, [FrameRotation(0.0, 1.0, np.zeros(3))], (0.0, 0.1))
    assert video_rotations([]) == []
