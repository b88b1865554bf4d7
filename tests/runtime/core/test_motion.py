"""Known camera motion: trajectory files in every format the runtime reads, and gyroscope logs integrated to poses."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.core.camera import intrinsics, point_paths
from runtime.core.motion import (
    CAMERA_AXES,
    N_POSES,
    GyroLog,
    GyroMotion,
    MotionError,
    RowMotion,
    TrajectoryFile,
    axes_matrix,
    exponential,
    exponentials,
    exposure_motion,
    gyro_trajectory,
    in_camera_axes,
    logarithm,
    read_frame_times,
    read_gyro_log,
    read_trajectory,
)
from runtime.core.tiling import blur_extent_px
from tests.conftest import SHARED, shared_file

RECORDED = sorted((SHARED / "data" / "trajectories").glob("*.txt"))


# --- trajectory files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [path.name for path in RECORDED] or ["000000000009_0.txt"])
def test_recorded_trajectories_read_as_25_mean_centred_poses(name):
    path = shared_file(f"data/trajectories/{name}")
    trajectory = read_trajectory(path)
    raw = np.loadtxt(path, delimiter=",")
    assert trajectory.shape == (N_POSES, 3)
    np.testing.assert_allclose(trajectory.mean(axis=0), 0.0, atol=1e-15)
    if len(raw) == N_POSES:  # no resampling: the last three columns, mean-centred, in file order
        np.testing.assert_allclose(trajectory, raw[:, 3:] - raw[:, 3:].mean(axis=0), atol=1e-15)
    # a hand-shake photo: a few pixels of blur at the reference's default focal length for a 256px image
    assert 0.5 < blur_extent_px(trajectory, intrinsics(256, 256), 256, 256) < 60


def test_reader_matches_the_trajectory_the_authors_fixture_was_made_from(case_b):
    """The fixture's trajectory is recorded file 000000000009_0 mean-centred, resampled and scaled x5."""
    trajectory = read_trajectory(shared_file("data/trajectories/000000000009_0.txt"))
    np.testing.assert_allclose(trajectory * 5, case_b["trajectory"][0], atol=1e-6)


@pytest.mark.parametrize("columns", [6, 3])
def test_a_recording_is_resampled_over_normalised_time(tmp_path, columns):
    time = np.linspace(0.0, 1.0, 49)
    angles = 0.1 * np.stack([time, -2 * time, time**2], axis=1)
    rows = np.hstack([np.zeros((49, columns - 3)), angles])
    path = tmp_path / "trajectory.txt"
    np.savetxt(path, rows, delimiter=",")
    trajectory = read_trajectory(path)
    expected_time = np.linspace(0.0, 1.0, N_POSES)
    np.testing.assert_allclose(trajectory[:, 0], 0.1 * (expected_time - 0.5), atol=1e-12)
    np.testing.assert_allclose(trajectory[:, 1], -0.2 * (expected_time - 0.5), atol=1e-12)
    assert np.all(np.diff(trajectory[:, 2]) > 0)  # linear interpolation keeps the order in time


def test_the_files_the_cli_writes_read_back_as_they_are(tmp_path):
    """trajectory.json and trajectory.csv (as `runtime.io.batch` writes them) give their poses unchanged: an estimate
    is not mean-centred, and centring it would move the restored image."""
    poses = np.random.default_rng(0).normal(0.002, 0.01, (N_POSES, 3))
    json_path = tmp_path / "trajectory.json"
    json_path.write_text(json.dumps({"focal_length_px": 512.0, "poses": poses.tolist()}))
    csv_path = tmp_path / "trajectory.csv"
    lines = ["pose,pitch_rad,yaw_rad,roll_rad,focal_length_px,width_px,height_px"]
    lines += [f"{i},{float(p)!r},{float(y)!r},{float(r)!r},512.0,256,256" for i, (p, y, r) in enumerate(poses)]
    csv_path.write_text("\n".join(lines) + "\n")
    np.testing.assert_array_equal(read_trajectory(json_path), poses)
    np.testing.assert_array_equal(read_trajectory(csv_path), poses)
    with pytest.raises(MotionError, match=r"trajectory.json: holds 25 poses; the bundle needs 9"):
        read_trajectory(json_path, n_poses=9)


def test_a_missing_trajectory_file_is_refused(tmp_path):
    with pytest.raises(MotionError, match=r"missing.txt: cannot read trajectory file \(No such file"):
        read_trajectory(tmp_path / "missing.txt")


# --- rotations ----------------------------------------------------------------------------------------------


def test_exponential_and_logarithm_are_inverse_and_exact():
    rng = np.random.default_rng(1)
    vectors = [*rng.normal(0, 0.8, (20, 3)), np.array([1e-10, 0, -2e-10]), np.zeros(3)]
    for vector in vectors:
        matrix = exponential(vector)
        np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-14)
        assert np.linalg.det(matrix) == pytest.approx(1.0, abs=1e-14)
        np.testing.assert_allclose(logarithm(matrix), vector, atol=1e-12)
    # Many at once, small angles among large ones, as one at a time.
    np.testing.assert_array_equal(exponentials(np.stack(vectors)), np.stack([exponential(v) for v in vectors]))
    # about z by 90 degrees: x goes to y
    np.testing.assert_allclose(exponential(np.array([0, 0, np.pi / 2])) @ [1, 0, 0], [0, 1, 0], atol=1e-15)


# --- gyroscope logs -----------------------------------------------------------------------------------------


def _constant(axis: int, rate: float, duration: float = 0.1, samples: int = 101) -> GyroLog:
    velocity = np.zeros((samples, 3))
    velocity[:, axis] = rate
    return GyroLog(np.linspace(0.0, duration, samples), velocity)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_constant_rotation_gives_evenly_spaced_poses_turning_back(axis):
    """The camera turns by +w t, so the scene turns by -w t: the pose runs from +w T/2 to -w T/2."""
    poses = gyro_trajectory(_constant(axis, 0.5), 0.0, 0.1)
    expected = np.zeros((N_POSES, 3))
    expected[:, axis] = -0.5 * (np.linspace(0.0, 0.1, N_POSES) - 0.05)
    np.testing.assert_allclose(poses, expected, atol=1e-15)


def test_the_poses_move_the_image_as_the_camera_turns():
    """Physical signs in the nets' image frame (x right, y down): panning right (+y rate) moves the scene left,
    tilting up (+x rate: the optical axis turns towards -y) moves it down, and rolling (+z: the camera's x axis
    turns towards its y) turns a point right of the centre upwards."""
    camera = intrinsics(200, 200, 200.0)
    points = np.array([[100.0, 100.0], [150.0, 100.0]])

    def motion(axis: int) -> np.ndarray:
        paths = point_paths(gyro_trajectory(_constant(axis, 0.5), 0.0, 0.1), camera, points)
        return paths[-1] - paths[0]  # (points, xy) from the first pose to the last

    pan, tilt, roll = motion(1), motion(0), motion(2)
    assert pan[0, 0] < -9 and abs(pan[0, 1]) < 1e-9
    assert tilt[0, 1] > 9 and abs(tilt[0, 0]) < 1e-9
    assert np.allclose(roll[0], 0, atol=1e-9) and roll[1, 1] < -2


def test_integration_recovers_a_known_orientation_path():
    """An orientation path about all three axes at once (rotations that do not commute; 4-10 Hz tremor), sampled
    by a 1 kHz gyroscope: the integrated poses equal the path's own (relative to its start, as seen by the scene,
    mean-centred) within 1e-5 rad, a hundredth of a pixel at 1000 px. The error is the linear interpolation of the
    rate between samples: sampling twice as fast divides it by 4."""

    def orientation(t: float) -> np.ndarray:
        return exponential(np.array([0.02 * np.sin(40 * t), 0.03 * t + 0.01 * np.cos(25 * t), 0.015 * np.sin(60 * t)]))

    start, end = 0.0305, 0.1505  # between samples
    truth = np.stack([logarithm((orientation(start).T @ orientation(t)).T) for t in np.linspace(start, end, N_POSES)])
    truth -= truth.mean(axis=0)
    assert np.abs(truth).max() > 0.005

    def error(interval_s: float) -> float:
        times = np.arange(0.0, 0.2, interval_s)
        step = 1e-6
        rates = np.stack([logarithm(orientation(t - step).T @ orientation(t + step)) / (2 * step) for t in times])
        return float(np.abs(gyro_trajectory(GyroLog(times, rates), start, end) - truth).max())

    at_1khz, at_2khz = error(0.001), error(0.0005)
    assert at_1khz < 1e-5
    assert 3.5 < at_1khz / at_2khz < 4.5


def test_an_exposure_outside_the_log_or_backwards_is_refused():
    log = _constant(1, 0.5)
    with pytest.raises(ValueError, match=r"the exposure 0.05 to 0.2 s runs outside the gyroscope log \(0 to 0.1 s\)"):
        gyro_trajectory(log, 0.05, 0.2)
    with pytest.raises(ValueError, match="must end after it starts"):
        gyro_trajectory(log, 0.05, 0.05)


def test_gyro_logs_are_read_with_or_without_a_header(tmp_path):
    rows = "0.000,0.1,0.2,0.3\n0.005,0.1,0.25,0.3\n0.010,0.1,0.3,0.3\n"
    for name, text in [("plain.csv", rows), ("header.csv", "time_s,x,y,z\n" + rows)]:
        log = read_gyro_log(_write(tmp_path / name, text))
        np.testing.assert_allclose(log.times_s, [0.0, 0.005, 0.01])
        np.testing.assert_allclose(log.angular_velocity[:, 1], [0.2, 0.25, 0.3])
        assert log.span_s == (0.0, 0.01)


def _gcsv(rows: str, readout: str = "frame_readout_time,15.23\n") -> str:
    """A Gyroflow IMU log: 1 ms ticks, raw gyroscope units of 0.0005 rad/s, accelerometer columns too."""
    return (
        "GYROFLOW IMU LOG\nversion,1.3\nid,test_logger\norientation,YxZ\nvendor,nobody\n"
        + readout
        + "tscale,0.001\ngscale,0.0005\nascale,0.00048828125\nt,gx,gy,gz,ax,ay,az\n"
        + rows
    )


def test_gyroflow_gcsv_logs_are_read_in_seconds_and_rad_per_s_with_their_readout(tmp_path):
    rows = "0,200,400,600,-1137,-15689,-2986\n5,200,500,600,-1179,-15694,-2887\n10,200,600,600,-1247,-15702,-2794\n"
    log = read_gyro_log(_write(tmp_path / "clip.gcsv", _gcsv(rows)))
    np.testing.assert_allclose(log.times_s, [0.0, 0.005, 0.01])
    np.testing.assert_allclose(log.angular_velocity, [[0.1, 0.2, 0.3], [0.1, 0.25, 0.3], [0.1, 0.3, 0.3]])
    assert log.readout_s == pytest.approx(0.01523)
    # The header's orientation is not applied; a mount given by --gyro-axes is, and the readout stays.
    turned = in_camera_axes(log, "x,-y,-z")
    np.testing.assert_allclose(turned.angular_velocity[0], [0.1, -0.2, -0.3])
    assert turned.readout_s == log.readout_s
    neutral = read_gyro_log(_write(tmp_path / "n.gcsv", _gcsv(rows, readout="").replace("GYROFLOW", "CAMERA")))
    np.testing.assert_allclose(neutral.angular_velocity, log.angular_velocity)
    assert neutral.readout_s is None
    for direction in ("1", "180", "BottomToTop"):  # Gyroflow's spellings of rows read upwards: a negative readout
        bottom_up = _gcsv(rows, readout=f"frame_readout_time,15.23\nframe_readout_direction,{direction}\n")
        assert read_gyro_log(_write(tmp_path / "b.gcsv", bottom_up)).readout_s == pytest.approx(-0.01523)
    across = _gcsv(rows, readout="frame_readout_time,15.23\nframe_readout_direction,2\n")
    with pytest.raises(MotionError, match="frame_readout_direction 2: only rows read top to bottom or bottom to top"):
        read_gyro_log(_write(tmp_path / "c.gcsv", across))
    # As Gyroflow reads them: the first column may be named `time`, columns count by place, and the scales default
    # to 0.001 (ms ticks) and 1 (rad/s).
    bare = "CAMERA IMU LOG\nversion,1.3\ntime,wx,wy,wz\n0,0.1,0.2,0.3\n5,0.1,0.25,0.3\n10,0.1,0.3,0.3\n"
    defaults = read_gyro_log(_write(tmp_path / "bare.gcsv", bare))
    np.testing.assert_allclose(defaults.times_s, log.times_s)
    np.testing.assert_allclose(defaults.angular_velocity, log.angular_velocity)


def _write(path, text):
    path.write_text(text)
    return path


# --- known motion for a batch -------------------------------------------------------------------------------


def test_gyro_motion_gives_photos_their_window_and_video_frames_theirs(tmp_path):
    times = np.linspace(0.0, 1.0, 1001)
    rates = np.stack([np.sin(7 * times), np.cos(3 * times), 0.2 * times], axis=1)
    log = GyroLog(times, rates)
    whole = GyroMotion(tmp_path / "gyro.csv", log, N_POSES)
    np.testing.assert_array_equal(whole.photo(), gyro_trajectory(log, 0.0, 1.0))
    assert whole.source.endswith("exposure the whole log")
    with pytest.raises(MotionError, match="gyro.csv: a video needs --exposure"):
        whole.frame(0, 0.0)
    timed = GyroMotion(tmp_path / "gyro.csv", log, N_POSES, start_s=0.1, duration_s=0.02)
    np.testing.assert_allclose(timed.photo(), gyro_trajectory(log, 0.1, 0.12), rtol=0, atol=1e-15)
    np.testing.assert_allclose(timed.frame(3, 0.1), gyro_trajectory(log, 0.2, 0.22), rtol=0, atol=1e-15)
    assert timed.source.endswith("exposure 0.02 s from 0.1 s")
    with pytest.raises(MotionError, match=r"gyro.csv: the exposure .* runs outside the gyroscope log"):
        timed.frame(30, 1.0)


def test_a_trajectory_file_is_for_photos(tmp_path):
    poses = np.zeros((N_POSES, 3))
    known = TrajectoryFile(tmp_path / "t.json", poses)
    assert known.photo() is poses and known.source == f"file {tmp_path / 't.json'}"
    with pytest.raises(MotionError, match="t.json: a trajectory file gives one photo's motion"):
        known.frame(0, 0.0)


def test_a_rolling_shutter_gives_each_row_its_own_window(tmp_path):
    """Row fraction r is exposed from start + r * readout: the top row from the start, the bottom row one readout
    later; bands of at most 2.5 ms of readout."""
    times = np.linspace(0.0, 1.0, 1001)
    log = GyroLog(times, np.stack([np.sin(7 * times), np.cos(3 * times), 0.2 * times], axis=1))
    motion = GyroMotion(tmp_path / "gyro.csv", log, N_POSES, start_s=0.1, duration_s=0.03, readout_s=0.02)
    rows = motion.photo()
    assert isinstance(rows, RowMotion) and rows.bands == 8
    for fraction in (0.0, 0.25, 1.0):
        start = 0.1 + 0.02 * fraction
        np.testing.assert_allclose(rows.trajectory_at(fraction), gyro_trajectory(log, start, start + 0.03), atol=1e-15)
    assert not np.allclose(rows.trajectory_at(0.0), rows.trajectory_at(1.0), atol=1e-4)
    assert motion.source.endswith("exposure 0.03 s from 0.1 s, rolling shutter read out in 0.02 s")
    assert isinstance(motion.frame(15, 0.5), RowMotion)
    assert GyroMotion(tmp_path / "g", log, N_POSES, 0.1, 0.03, readout_s=0.001).photo().bands == 1
    # The same without the batch's wrapper: a global shutter is one trajectory.
    np.testing.assert_allclose(exposure_motion(log, 0.1, 0.03), gyro_trajectory(log, 0.1, 0.13), atol=1e-15)
    assert exposure_motion(log, 0.1, 0.03, readout_s=0.02).bands == 8
    # The whole log: the top row's exposure starts with it and the bottom row's ends with it.
    whole = GyroMotion(tmp_path / "gyro.csv", log, N_POSES, readout_s=0.2).photo()
    np.testing.assert_allclose(whole.trajectory_at(1.0), gyro_trajectory(log, 0.2, 1.0), atol=1e-15)
    # The bottom row's window must lie in the log too, and a readout as long as the log leaves no exposure.
    with pytest.raises(MotionError, match=r"gyro.csv: the exposure 0.98 to 1.01 s runs outside the gyroscope log"):
        GyroMotion(tmp_path / "gyro.csv", log, N_POSES, 0.96, 0.03, readout_s=0.02).photo()
    with pytest.raises(MotionError, match="the log is too short for a readout of 1 s"):
        GyroMotion(tmp_path / "gyro.csv", log, N_POSES, readout_s=1.0).photo()


def test_a_negative_readout_reads_the_rows_bottom_to_top(tmp_path):
    """Row fraction r is still exposed from start + r * readout: with a readout of -20 ms the bottom row starts
    20 ms before the top row, whose start `start_s` gives; over the whole log the bottom row starts with it."""
    times = np.linspace(0.0, 1.0, 1001)
    log = GyroLog(times, np.stack([np.sin(7 * times), np.cos(3 * times), 0.2 * times], axis=1))
    upwards = GyroMotion(tmp_path / "gyro.csv", log, N_POSES, start_s=0.1, duration_s=0.03, readout_s=-0.02)
    rows = upwards.photo()
    assert isinstance(rows, RowMotion) and rows.bands == 8
    for fraction in (0.0, 0.5, 1.0):
        start = 0.1 - 0.02 * fraction
        np.testing.assert_allclose(rows.trajectory_at(fraction), gyro_trajectory(log, start, start + 0.03), atol=1e-15)
    assert upwards.source.endswith("rolling shutter read out bottom to top in 0.02 s")
    whole = GyroMotion(tmp_path / "gyro.csv", log, N_POSES, readout_s=-0.2).photo()
    np.testing.assert_allclose(whole.trajectory_at(1.0), gyro_trajectory(log, 0.0, 0.8), atol=1e-15)
    np.testing.assert_allclose(whole.trajectory_at(0.0), gyro_trajectory(log, 0.2, 1.0), atol=1e-15)


def test_frame_times_give_each_frame_its_own_exposure_and_readout(tmp_path):
    """As a camera's per-frame metadata: the top row's exposure start, the exposure time, the readout."""
    times = np.linspace(0.0, 1.0, 1001)
    log = GyroLog(times, np.stack([np.sin(7 * times), np.cos(3 * times), 0.2 * times], axis=1))
    path = _write(
        tmp_path / "frames.csv",
        "exposure_start_s,exposure_s,readout_s\n0.10,0.030,0\n0.20,0.010,0.02\n",
    )
    frame_times = read_frame_times(path)
    motion = GyroMotion(tmp_path / "gyro.csv", log, N_POSES, frame_times=frame_times)
    np.testing.assert_allclose(motion.frame(0, 0.0), gyro_trajectory(log, 0.1, 0.13), atol=1e-15)
    second = motion.frame(1, 99.0)  # the video's own timestamp does not matter
    assert isinstance(second, RowMotion) and second.bands == 8
    np.testing.assert_allclose(second.trajectory_at(1.0), gyro_trajectory(log, 0.22, 0.23), atol=1e-15)
    np.testing.assert_allclose(motion.photo(), gyro_trajectory(log, 0.1, 0.13), atol=1e-15)  # a photo: its row
    assert motion.source.endswith(f"exposure per frame from {path}")
    with pytest.raises(MotionError, match="frames.csv: has 2 frames' times; the video has more"):
        motion.frame(2, 0.0)
    # Without a readout column the motion's own readout holds.
    plain = read_frame_times(_write(tmp_path / "plain.csv", "exposure_start_s,exposure_s\n0.1,0.03\n"))
    assert plain.readout_s is None
    assert GyroMotion(tmp_path / "g", log, N_POSES, readout_s=0.005, frame_times=plain).frame(0, 0.0).bands == 2


@pytest.mark.parametrize(
    ("reader", "name", "content", "reason"),
    [
        (read_trajectory, "two.txt", "1,2\n3,4\n", "3 or 6 comma-separated columns"),
        (read_trajectory, "one_row.txt", "1,2,3,4,5,6\n", "3 or 6 comma-separated columns"),
        (read_trajectory, "nan.txt", "0,0,0,nan,0,0\n0,0,0,1,1,1\n", "non-finite"),
        (read_trajectory, "ragged.txt", "0,0,0,0.1,0.2,0.3\n0,0,0,0.1,0.2\n", "not a trajectory file"),
        (read_trajectory, "words.csv", "a,b,c\n1,2,3\n", "needs the columns pitch_rad, yaw_rad, roll_rad"),
        (read_trajectory, "text.csv", "pitch_rad,yaw_rad,roll_rad\n1,x,3\n", "not a number"),
        (read_trajectory, "keys.json", '{"trajectory": [[0, 0, 0]]}', "'poses' list"),
        (read_trajectory, "flat.json", '{"poses": [0, 0, 0]}', "rows of 3 angles"),
        (read_trajectory, "broken.json", '{"poses": [[0, 0, 0]', "not a trajectory.json"),
        (read_trajectory, "binary.txt", b"\xff\xfe\x00\x01", "cannot read"),
        (read_gyro_log, "gyro.csv", "0,1,2\n1,1,2\n", "4 columns"),
        (read_gyro_log, "gyro.csv", "0,1,2,3\n", "4 columns"),
        (read_gyro_log, "gyro.csv", "time_s,x,y,z\n\n", "holds no samples"),
        (read_gyro_log, "gyro.csv", "0,1,2,3\n0,1,2,3\n", "times must increase"),
        (read_gyro_log, "gyro.csv", "0,1,2,3\n1,nan,2,3\n", "non-finite"),
        (read_gyro_log, "gyro.csv", "time_s,x,y,z\n0,a,2,3\n", "not a gyroscope log"),
        (read_gyro_log, "a.gcsv", "GYROFLOW IMU LOG\ntscale,0.001\ngscale,1\n0,1,2,3\n", "without its t,gx,gy,gz"),
        (read_gyro_log, "a.gcsv", "GYROFLOW IMU LOG\ngscale,x\nt,gx,gy,gz\n0,1,2,3\n1,1,2,3\n", "gscale must be"),
        (read_gyro_log, "a.gcsv", "CAMERA IMU LOG\ntscale,0\ngscale,1\nt,gx,gy,gz\n0,1,2,3\n", "tscale must be"),
        (read_gyro_log, "a.gcsv", "CAMERA IMU LOG\nt,gx,gy\n0,1,2\n1,1,2\n", "not a gyroscope log"),
        (
            read_gyro_log,
            "a.gcsv",
            "CAMERA IMU LOG\nframe_readout_time,-1\nt,gx,gy,gz\n0,1,2,3\n1,1,2,3\n",
            "frame_readout_time",
        ),
        (read_gyro_log, "a.gcsv", "CAMERA IMU LOG\ntscale,1\ngscale,1\nt,gx,gy,gz\n0,1,2,x\n", "not a gyroscope"),
        (read_frame_times, "frames.csv", "start,exposure\n0,0.01\n", "need the columns exposure_start_s, exposure_s"),
        (read_frame_times, "frames.csv", "exposure_start_s,exposure_s\n0,x\n", "not a number"),
        (read_frame_times, "frames.csv", "exposure_start_s,exposure_s\n0,0\n", "exposure times must be positive"),
        (read_frame_times, "frames.csv", "exposure_start_s,exposure_s,readout_s\n0,0.01,nan\n", "every time finite"),
        (
            read_frame_times,
            "frames.csv",
            "exposure_start_s,exposure_s\n" + "9" * 200_000 + ",1\n",
            "not a CSV of frame",
        ),
    ],
)
def test_bad_files_are_refused_in_one_line_naming_them(tmp_path, reader, name, content, reason):
    """Trajectory files, gyroscope logs and frame times: what cannot be used is said in one line naming it."""
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(MotionError) as caught:
        reader(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and reason in message and "\n" not in message


def test_a_gyroscope_mounted_otherwise_is_turned_into_the_cameras_axes():
    """An Android phone's sensor frame (x right, y up, z out of the screen) seen from its back camera (x right,
    y down, z forward): "x,-y,-z". A rate about the phone's y (up) is a rate about the camera's -y."""
    np.testing.assert_array_equal(axes_matrix("x,-y,-z"), np.diag([1.0, -1.0, -1.0]))
    np.testing.assert_array_equal(axes_matrix(" Y, -X ,z"), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]])
    phone = GyroLog(np.array([0.0, 0.1]), np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]))
    camera = in_camera_axes(phone, "x,-y,-z")
    np.testing.assert_array_equal(camera.angular_velocity, [[0.1, -0.2, -0.3], [0.4, -0.5, -0.6]])
    np.testing.assert_array_equal(in_camera_axes(phone, CAMERA_AXES).angular_velocity, phone.angular_velocity)
    for spec, reason in [
        ("x,y", "three signed axes"),
        ("x,y,w", "three signed axes"),
        ("x,x,z", "each of x, y and z once"),
        ("x,y,-z", "mirror the frame"),
        ("y,x,z", "mirror the frame"),
    ]:
        with pytest.raises(ValueError, match=reason):
            axes_matrix(spec)


# --- physical bounds and file bounds ------------------------------------------------------------------------

ROTATION_BOUND = "rotation {value} rad is outside -0.785398..0.785398 rad"


@pytest.mark.parametrize("value", [100.0, 1e30, -1e30])
@pytest.mark.parametrize("form", ["json", "csv", "recording"])
def test_trajectory_files_with_poses_beyond_a_quarter_turn_are_refused(tmp_path, form, value):
    """A pose of 100 rad or 1e30 rad is no camera shake: refused naming the file, the row, the value and the limit
    (a constant offset of 1e30 rad would otherwise be centred away to nothing)."""
    poses = np.zeros((N_POSES, 3))
    poses[:, 1] = value
    if form == "json":
        path = _write(tmp_path / "trajectory.json", json.dumps({"poses": poses.tolist()}))
        row = "pose 0"
    elif form == "csv":
        lines = ["pose,pitch_rad,yaw_rad,roll_rad", *(f"{i},{p},{y},{r}" for i, (p, y, r) in enumerate(poses.tolist()))]
        path = _write(tmp_path / "trajectory.csv", "\n".join(lines) + "\n")
        row = "pose 0"
    else:
        path = tmp_path / "recorded.txt"
        np.savetxt(path, np.hstack([np.zeros((N_POSES, 3)), poses]), delimiter=",")
        row = "line 1"
    shown = f"{value:g}" if abs(value) > 1e9 else f"{value:.0f}"
    with pytest.raises(MotionError) as caught:
        read_trajectory(path)
    assert str(caught.value) == f"{path}: {row} yaw: " + ROTATION_BOUND.format(value=shown)


def test_a_recording_is_bounded_where_it_is_and_once_centred(tmp_path):
    """The row in the file is named by its line (comments and blank lines counted); a recording whose angles are
    each within bounds but whose centred poses are not is refused after centring."""
    path = _write(tmp_path / "recorded.txt", "# made up\n0,0,0,0,0.01,0\n\n0,0,0,0,2.5,0\n")
    with pytest.raises(MotionError, match=r"recorded.txt: line 4 yaw: rotation 2.5 rad is outside"):
        read_trajectory(path)
    rows = np.zeros((N_POSES, 6))
    rows[:-1, 4], rows[-1, 4] = -0.78, 0.78
    np.savetxt(path, rows, delimiter=",")
    with pytest.raises(
        MotionError, match=r"recorded.txt: pose 24 yaw \(mean-centred\): rotation 1.497599+8 rad is outside"
    ):
        read_trajectory(path)


def test_the_nets_clamped_estimates_read_back(tmp_path):
    """The trajectory net clamps to pi/4 in float32; the trajectory.json written from such an estimate reads."""
    poses = np.full((N_POSES, 3), np.float32(np.pi / 4), dtype=np.float32)
    path = _write(tmp_path / "trajectory.json", json.dumps({"poses": poses.astype(float).tolist()}))
    np.testing.assert_array_equal(read_trajectory(path), poses)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"poses": ' + "[" * 40 + "]" * 40 + "}", "(JSON nesting 41 levels is outside 0..32 levels)"),
        ("{" + '"a": {' * 100_000 + "}" * 100_001, "(JSON nested too deep to parse; JSON nesting must be within"),
        ('{"poses": [[1' + "0" * 400 + ", 0, 0]]}", "('int too large to convert to float')"),
        ('{"poses": [[1' + "0" * 5000 + ", 0, 0]]}", "(not valid JSON (Exceeds the limit (4300 digits)"),
    ],
)
def test_trajectory_json_nested_too_deep_or_beyond_floats_is_refused(tmp_path, text, reason):
    path = _write(tmp_path / "trajectory.json", text)
    with pytest.raises(MotionError) as caught:
        read_trajectory(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a trajectory.json with a 'poses' list of [pitch, yaw, roll] {reason}")
    assert "\n" not in message


def test_a_trajectory_file_over_16_mib_is_refused_unparsed(tmp_path):
    path = tmp_path / "trajectory.csv"
    path.write_bytes(b"pitch_rad,yaw_rad,roll_rad\n" + b"0,0,0\n" * (3 * 2**20))
    with pytest.raises(MotionError) as caught:
        read_trajectory(path)
    size = path.stat().st_size
    assert str(caught.value) == f"{path}: trajectory file: file size {size} bytes is outside 0..16777216 bytes"


def test_a_csv_field_over_the_csv_limit_is_refused(tmp_path):
    path = _write(tmp_path / "trajectory.csv", 'pitch_rad,yaw_rad,roll_rad\n"' + "0" * 200_000 + '",0,0\n')
    with pytest.raises(MotionError, match=r"trajectory.csv: not a CSV trajectory \(field larger than field limit"):
        read_trajectory(path)


@pytest.mark.parametrize(
    ("name", "text", "where", "value"),
    [
        ("gyro.csv", "0,0.1,0.2,0.3\n0.01,1e6,0.2,0.3\n", "line 2 x", "1000000"),
        ("gyro.csv", "time_s,x,y,z\n0,0.1,0.2,0.3\n\n# paused\n0.01,0.1,0.2,-41\n", "line 5 z", "-41"),
        # 41 rad/s once scaled: 82000 raw units of 0.0005 rad/s
        ("clip.gcsv", _gcsv("0,200,400,600,0,0,0\n5,200,82000,600,0,0,0\n"), "line 12 y", "41"),
    ],
)
def test_gyroscope_rates_beyond_any_gyroscope_are_refused_naming_the_line(tmp_path, name, text, where, value):
    """Common MEMS gyroscopes measure at most 2000 deg/s (35 rad/s): a sample beyond 40 rad/s (after the log's
    scale) is refused naming the file's line and the axis."""
    path = _write(tmp_path / name, text)
    with pytest.raises(MotionError) as caught:
        read_gyro_log(path)
    assert str(caught.value) == f"{path}: {where}: gyroscope rate {value} rad/s is outside -40..40 rad/s"


def test_gyroscope_times_that_overflow_once_scaled_are_refused(tmp_path):
    path = _write(tmp_path / "a.gcsv", "CAMERA IMU LOG\ntscale,1e300\nt,gx,gy,gz\n0,0,0,0\n1e300,0,0,0\n")
    with pytest.raises(MotionError, match=r"a.gcsv: holds times beyond the range of numbers once scaled to seconds"):
        read_gyro_log(path)
