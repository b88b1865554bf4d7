"""Camera motion known from outside the image: trajectory files and gyroscope logs, as the poses the nets use.

A trajectory is `(P, 3)` rotation vectors in radians, (pitch, yaw, roll) about the camera's x (right), y (down)
and z (forward) axes, in time order. Pose i carries a sharp-image ray `d` to `R_i d`, so a scene point at pixel
`p` of the sharp image lies at `K R_i K^-1 p` under pose i (`runtime.core.camera.point_paths`).

A gyroscope measures the camera's angular velocity `w(t)` in its own frame; the camera's orientation `C(t)` (its
axes in the frame of the exposure's start) then follows `dC/dt = C [w]x`. A scene ray fixed in that frame is seen
along `C(t)^T d` at time t, so the pose is the rotation vector of `C(t)^T`. Poses are taken at `P` evenly spaced
times from the exposure's start to its end and mean-centred, as the authors' trajectory files are read: the
sharp image is the mean pose.
"""

from __future__ import annotations

import argparse
import csv
import functools
import itertools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from runtime.core import textfiles
from runtime.core.limits import GYRO_RATE_RAD_S, ROTATION_RAD, Limit, LimitError

N_POSES = 25
#: Column names of the trajectory CSV that `python -m runtime.deblur` writes.
CSV_ANGLES = ("pitch_rad", "yaw_rad", "roll_rad")
#: The three angles of a pose, and the three axes of a gyroscope sample, in the order they are given.
ANGLE_NAMES = ("pitch", "yaw", "roll")
RATE_NAMES = ("x", "y", "z")


class MotionError(ValueError):
    """A trajectory file or gyroscope log that cannot be used; one line naming the file."""


# --- trajectory files ---------------------------------------------------------------------------------------


def resample(trajectory: np.ndarray, n_poses: int = N_POSES) -> np.ndarray:
    """Linear interpolation of `(T, 3)` poses to `n_poses` over the normalised time [0, 1]."""
    source = np.linspace(0.0, 1.0, len(trajectory))
    target = np.linspace(0.0, 1.0, n_poses)
    return np.stack([np.interp(target, source, trajectory[:, axis]) for axis in range(trajectory.shape[1])], axis=1)


def recorded_poses(angles: np.ndarray, n_poses: int = N_POSES) -> np.ndarray:
    """A recorded path of `(T, 3)` rotation vectors as `(n_poses, 3)`: resampled over time and mean-centred."""
    poses = resample(np.asarray(angles, dtype=np.float64), n_poses)
    return poses - poses.mean(axis=0)


def read_trajectory(path: str | Path, n_poses: int = N_POSES) -> np.ndarray:
    """A known trajectory `(n_poses, 3)` float64 radians from a file, by its content:

    - the `trajectory.json` or `trajectory.csv` that `python -m runtime.deblur` writes: its poses as they are
      (there must be `n_poses` of them);
    - the authors' format (6 comma-separated columns, the last 3 angles) or 3 columns of angles, one row per
      recorded instant: resampled to `n_poses` over time and mean-centred.

    Every angle must lie within `ROTATION_RAD`, and the file within `TEXT_FILE_BYTES` (`runtime.core.limits`).
    """
    path = Path(path)
    try:
        text = textfiles.read_text(path, "trajectory file")
    except textfiles.TextFileError as error:
        raise MotionError(f"{path}: {error}") from None
    first = text.lstrip()[:1]
    if first == "{":
        poses = _json_poses(path, text)
    elif first and (first.isalpha() or first == "_"):
        poses = _csv_poses(path, text)
    else:
        poses = recorded_poses(_numbers(path, text), n_poses)
        _within(ROTATION_RAD, poses, lambda index: f"{path}: pose {index[0]} {ANGLE_NAMES[index[1]]} (mean-centred)")
    if poses.shape != (n_poses, 3):
        raise MotionError(f"{path}: holds {len(poses)} poses; the bundle needs {n_poses}")
    return poses


def _within(limit: Limit, values: np.ndarray, source: Callable[[tuple[int, ...]], str]) -> None:
    """`limit.check_all`, its refusal as a MotionError."""
    try:
        limit.check_all(values, source)
    except LimitError as error:
        raise MotionError(str(error)) from None


def _read_text(path: Path, what: str) -> str:
    """A text file's content, or a MotionError naming it and what it was to be (missing, unreadable, binary)."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not a text file"
        raise MotionError(f"{path}: cannot read {what} ({reason})") from None


def _json_poses(path: Path, text: str) -> np.ndarray:
    reason = "not a trajectory.json with a 'poses' list of [pitch, yaw, roll]"
    try:
        document = textfiles.parse_json(text)
    except textfiles.TextFileError as error:
        raise MotionError(f"{path}: {reason} ({error})") from None
    try:
        poses = np.asarray(document["poses"], dtype=np.float64)
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise MotionError(f"{path}: {reason} ({str(error).splitlines()[0] if str(error) else error!r})") from None
    return _checked(path, poses, lambda row: f"pose {row}")


def _csv_poses(path: Path, text: str) -> np.ndarray:
    try:
        rows = list(csv.DictReader(text.splitlines()))
    except csv.Error as error:
        raise MotionError(f"{path}: not a CSV trajectory ({error})") from None
    if not rows or any(name not in rows[0] for name in CSV_ANGLES):
        raise MotionError(f"{path}: a CSV trajectory needs the columns {', '.join(CSV_ANGLES)}")
    try:
        poses = np.array([[float(row[name]) for name in CSV_ANGLES] for row in rows], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise MotionError(f"{path}: a pose is not a number ({error})") from None
    return _checked(path, poses, lambda row: f"pose {row}")


def _numbers(path: Path, text: str) -> np.ndarray:
    """The angle columns of a header-less recording: 6 columns (the authors', angles last) or 3."""
    numbers, data = _numbered_rows(text.splitlines(), first_line=1)
    try:
        table = _loadtxt(data, columns=None)
    except ValueError as error:
        raise MotionError(f"{path}: not a trajectory file ({str(error).splitlines()[0]})") from None
    if table.shape[1] not in (3, 6) or len(table) < 2:
        raise MotionError(f"{path}: expected at least 2 rows of 3 or 6 comma-separated columns, got {table.shape}")
    return _checked(path, table[:, -3:], lambda row: f"line {numbers[row]}")


def _loadtxt(lines: list[str], columns: list[int] | None) -> np.ndarray:
    """`(N, C)` float64 numbers of comma-separated `lines` (only `columns`, when given); ValueError when they are
    not numbers. A table with no numbers comes back empty, without numpy's warning: the callers refuse it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return np.loadtxt(lines, delimiter=",", ndmin=2, dtype=np.float64, usecols=columns)


def _numbered_rows(lines: list[str], first_line: int) -> tuple[list[int], list[str]]:
    """The lines holding data (not blank, not only a `#` comment) and their numbers in the file, the first of
    `lines` being `first_line`: what `np.loadtxt` reads of them, row by row."""
    numbered = [(number, line) for number, line in enumerate(lines, first_line) if line.split("#", 1)[0].strip()]
    return [number for number, _ in numbered], [line for _, line in numbered]


def _checked(path: Path, poses: np.ndarray, row_name: Callable[[int], str]) -> np.ndarray:
    """`(N, 3)` finite angles within `ROTATION_RAD`, else a MotionError naming the row (`row_name(index)`)."""
    if poses.ndim != 2 or poses.shape[1] != 3:
        raise MotionError(f"{path}: poses must be rows of 3 angles, got shape {poses.shape}")
    if not np.all(np.isfinite(poses)):
        raise MotionError(f"{path}: holds non-finite angles")
    _within(ROTATION_RAD, poses, lambda index: f"{path}: {row_name(index[0])} {ANGLE_NAMES[index[1]]}")
    return poses


# --- gyroscope logs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GyroLog:
    """Angular-velocity samples: `times_s` `(N,)` increasing, `angular_velocity` `(N, 3)` rad/s about the camera's
    x (right), y (down) and z (forward) axes; and the rolling shutter's readout (s from the top row's exposure
    start to the bottom row's, negative when the bottom row is read first) when the log's file states it (a
    `.gcsv` header)."""

    times_s: np.ndarray
    angular_velocity: np.ndarray
    readout_s: float | None = None

    @property
    def span_s(self) -> tuple[float, float]:
        return float(self.times_s[0]), float(self.times_s[-1])

    @functools.cached_property
    def _at_samples(self) -> np.ndarray:
        """The camera's orientation at every sample `(N, 3, 3)`, integrated once per log."""
        steps = exponentials(
            0.5 * (self.angular_velocity[1:] + self.angular_velocity[:-1]) * np.diff(self.times_s)[:, None]
        )
        orientations = np.empty((len(self.times_s), 3, 3))
        orientations[0] = np.eye(3)
        for index, step in enumerate(steps):
            orientations[index + 1] = orientations[index] @ step
        return orientations

    def orientation_at(self, time_s: float) -> np.ndarray:
        """The camera's orientation `(3, 3)` (its axes in the frame of the first sample) at an instant of the log."""
        return self.orientations_at(np.array([time_s], dtype=np.float64))[0]

    def orientations_at(self, times_s: np.ndarray) -> np.ndarray:
        """The camera's orientations `(N, 3, 3)` at instants `(N,)` of the log: the rate interpolated linearly
        between samples, each piece's turn the exact rotation of its mean rate."""
        times, rates = self.times_s, self.angular_velocity
        steps = np.clip(np.searchsorted(times, times_s, side="right") - 1, 0, len(times) - 2)
        elapsed = times_s - times[steps]
        rate = rates[steps] + (rates[steps + 1] - rates[steps]) * (elapsed / (times[steps + 1] - times[steps]))[:, None]
        return self._at_samples[steps] @ exponentials(0.5 * (rates[steps] + rate) * elapsed[:, None])


#: First lines of a Gyroflow IMU log (`.gcsv`).
GCSV_FIRST_LINES = ("GYROFLOW IMU LOG", "CAMERA IMU LOG")
#: The spellings of a .gcsv log's `frame_readout_direction` for rows read downwards and upwards.
GCSV_TOP_TO_BOTTOM = ("0", "TopToBottom")
GCSV_BOTTOM_TO_TOP = ("1", "180", "BottomToTop")
#: What Gyroflow takes for a .gcsv log's scales when its header leaves them out.
GCSV_DEFAULT_SCALES = {"tscale": "0.001", "gscale": "1"}


def read_gyro_log(path: str | Path) -> GyroLog:
    """A gyroscope log: CSV rows `time_s, x, y, z` (seconds, rad/s), an optional header row; or a Gyroflow `.gcsv`
    log (`GCSV_FIRST_LINES`)."""
    path = Path(path)
    lines = _read_text(path, "gyroscope log").splitlines()
    if lines and lines[0].strip() in GCSV_FIRST_LINES:
        return _gcsv_log(path, lines)
    header = 1 if lines and lines[0].lstrip()[:1].isalpha() else 0
    numbers, data = _table(path, lines[header:], header + 1, columns=None)
    return _checked_log(path, numbers, data, time_scale=1.0, rate_scale=1.0)


def _gcsv_log(path: Path, lines: list[str]) -> GyroLog:
    """A Gyroflow IMU log: `key,value` header lines, then a table under a `t,gx,gy,gz[,...]` row (`time` also
    names the first column, and the columns count by place, as Gyroflow reads them) whose raw numbers `tscale`
    and `gscale` turn into seconds and rad/s (Gyroflow's defaults when absent: 0.001 and 1). The header's
    `orientation` is Gyroflow's own axis convention and is not applied (`--gyro-axes`, found by `runtime.tools.sync
    --find-axes`); its `frame_readout_time` (ms) is kept as the readout, negative when `frame_readout_direction`
    says bottom to top."""
    names_row = next((row for row, line in enumerate(lines) if line.split(",")[0].strip() in ("t", "time")), None)
    if names_row is None:
        raise MotionError(f"{path}: a .gcsv log without its t,gx,gy,gz column row")
    header = {key.strip(): value.strip() for key, _, value in (line.partition(",") for line in lines[1:names_row])}
    scales = {key: _number(header.get(key, default)) for key, default in GCSV_DEFAULT_SCALES.items()}
    for key, scale in scales.items():
        if not scale > 0:
            raise MotionError(f"{path}: {key} must be a positive number, got {header[key]}")
    numbers, data = _table(path, lines[names_row + 1 :], names_row + 2, columns=[0, 1, 2, 3])
    return _checked_log(path, numbers, data, scales["tscale"], scales["gscale"], _gcsv_readout_s(path, header))


def _gcsv_readout_s(path: Path, header: dict[str, str]) -> float | None:
    """The readout a .gcsv header states (ms there, s here), if any: negative read bottom to top. Readout across
    the columns (directions 2 and 3) is refused."""
    if "frame_readout_time" not in header:
        return None
    readout_ms = _number(header["frame_readout_time"])
    if not readout_ms >= 0:
        raise MotionError(f"{path}: frame_readout_time must be a number of ms >= 0, got {header['frame_readout_time']}")
    direction = header.get("frame_readout_direction", "0")
    if direction in GCSV_BOTTOM_TO_TOP:
        return -readout_ms / 1000
    if direction not in GCSV_TOP_TO_BOTTOM and readout_ms > 0:
        raise MotionError(f"{path}: frame_readout_direction {direction}: only rows read top to bottom or bottom to top")
    return readout_ms / 1000


def _number(text: str) -> float:
    """A finite number, or NaN (which every range check refuses)."""
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def _table(path: Path, lines: list[str], first_line: int, columns: list[int] | None) -> tuple[list[int], np.ndarray]:
    """The comma-separated numbers of `lines` (only `columns`, when given), and each row's line number in the file
    (the first of `lines` being `first_line`)."""
    numbers, data = _numbered_rows(lines, first_line)
    if not data:
        raise MotionError(f"{path}: holds no samples")
    try:
        return numbers, _loadtxt(data, columns)
    except ValueError as error:
        raise MotionError(f"{path}: not a gyroscope log ({str(error).splitlines()[0]})") from None


def _checked_log(
    path: Path,
    numbers: list[int],
    data: np.ndarray,
    time_scale: float,
    rate_scale: float,
    readout_s: float | None = None,
) -> GyroLog:
    """The log of `(N, 4)` rows of time and rates (on the lines `numbers` of the file), in the file's units times
    the scales: finite, times increasing, every rate within `GYRO_RATE_RAD_S` (`runtime.core.limits`)."""
    if data.shape[1] != 4 or len(data) < 2:
        raise MotionError(f"{path}: expected at least 2 rows of 4 columns (time_s, x, y, z), got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise MotionError(f"{path}: holds non-finite values")
    with np.errstate(over="ignore", under="ignore"):
        times, rates = data[:, 0] * time_scale, data[:, 1:] * rate_scale
    if not np.all(np.isfinite(times)):
        raise MotionError(f"{path}: holds times beyond the range of numbers once scaled to seconds")
    if not np.all(np.diff(times) > 0):
        raise MotionError(f"{path}: times must increase from row to row")
    _within(GYRO_RATE_RAD_S, rates, lambda index: f"{path}: line {numbers[index[0]]} {RATE_NAMES[index[1]]}")
    return GyroLog(times, rates, readout_s)


#: The camera's axes (x right, y down, z forward) as signed axes of a gyroscope: "x,-y,-z" for one whose y points up
#: and z backwards, e.g. an Android phone's sensor frame seen from its back camera in the phone's natural orientation.
CAMERA_AXES = "x,y,z"


def axes_matrix(spec: str) -> np.ndarray:
    """The `(3, 3)` matrix taking a gyroscope's rates to the camera's, from `spec`: for the camera's x, y and z in
    turn, the gyroscope axis along it, signed (`"y,-x,z"`: the camera's x is the gyroscope's y, its y the
    gyroscope's -x). Raises ValueError unless the spec turns one right-handed frame into the other."""
    matrix = _signed_permutation(spec)
    if np.linalg.det(matrix) < 0:
        raise ValueError(f"axes {spec!r} mirror the frame; a gyroscope's and the camera's are both right-handed")
    return matrix


def _signed_permutation(spec: str) -> np.ndarray:
    """The matrix `spec` names, mirroring or not."""
    parts = [part.strip().lower() for part in spec.split(",")]
    matrix = np.zeros((3, 3))
    if len(parts) != 3 or any(part.lstrip("+-") not in ("x", "y", "z") for part in parts):
        raise ValueError(f"axes must be three signed axes such as x,-y,-z, got {spec!r}")
    for row, part in enumerate(parts):
        matrix[row, "xyz".index(part.lstrip("+-"))] = -1.0 if part.startswith("-") else 1.0
    if not np.allclose(np.abs(matrix).sum(axis=0), 1):
        raise ValueError(f"axes must name each of x, y and z once, got {spec!r}")
    return matrix


def _proper_specs() -> tuple[str, ...]:
    """Every spec `axes_matrix` accepts, `CAMERA_AXES` first."""
    specs = (
        ",".join(sign + axis for sign, axis in zip(signs, order, strict=True))
        for order in itertools.permutations("xyz")
        for signs in itertools.product(("", "-"), repeat=3)
    )
    return tuple(spec for spec in specs if np.linalg.det(_signed_permutation(spec)) > 0)


#: The 24 ways a gyroscope can sit squarely in a camera, as `--gyro-axes` specs (`runtime.tools.sync` searches them).
AXES_SPECS = _proper_specs()


def add_gyro_axes_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--gyro-axes SPEC` (`axes_matrix`), for the commands that read gyroscope logs."""
    parser.add_argument(
        "--gyro-axes",
        default=CAMERA_AXES,
        metavar="SPEC",
        help="the gyroscope axes along the camera's x (right), y (down) and z (forward), signed, e.g. x,-y,-z "
        f"(default {CAMERA_AXES}: the log is in the camera's frame)",
    )


def in_camera_axes(log: GyroLog, spec: str) -> GyroLog:
    """The log's rates about the camera's axes, the gyroscope mounted as `spec` says (`axes_matrix`)."""
    return replace(log, angular_velocity=log.angular_velocity @ axes_matrix(spec).T)


def gyro_trajectory(log: GyroLog, start_s: float, end_s: float, n_poses: int = N_POSES) -> np.ndarray:
    """The trajectory `(n_poses, 3)` float64 of an exposure from `start_s` to `end_s` (the log's clock): the scene's
    rotation at evenly spaced instants relative to the exposure's start (`GyroLog.orientations_at`), mean-centred."""
    first, last = log.span_s
    if not (math.isfinite(start_s) and math.isfinite(end_s) and end_s > start_s):
        raise ValueError(f"an exposure must end after it starts, got {start_s} to {end_s} s")
    if start_s < first or end_s > last:
        raise ValueError(
            f"the exposure {start_s:g} to {end_s:g} s runs outside the gyroscope log ({first:g} to {last:g} s)"
        )
    orientations = log.orientations_at(np.linspace(start_s, end_s, n_poses))
    turns = orientations[0].T @ orientations
    poses = np.stack([logarithm(turn.T) for turn in turns])
    return poses - poses.mean(axis=0)


def exponential(rotation_vector: np.ndarray) -> np.ndarray:
    """The rotation matrix of a rotation vector (exact Rodrigues, without the nets' axis epsilon)."""
    return exponentials(np.asarray(rotation_vector, dtype=np.float64)[None])[0]


def exponentials(rotation_vectors: np.ndarray) -> np.ndarray:
    """The rotation matrices `(N, 3, 3)` of rotation vectors `(N, 3)` (`exponential`, many at once)."""
    angles = np.linalg.norm(rotation_vectors, axis=-1)
    x, y, z = rotation_vectors[:, 0], rotation_vectors[:, 1], rotation_vectors[:, 2]
    zero = np.zeros_like(x)
    cross = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(-1, 3, 3)
    small = angles < 1e-8
    safe = np.where(small, 1.0, angles)
    first = np.where(small, 1.0, np.sin(safe) / safe)
    second = np.where(small, 0.5, (1 - np.cos(safe)) / safe**2)
    return np.eye(3) + first[:, None, None] * cross + second[:, None, None] * (cross @ cross)


def logarithm(matrix: np.ndarray) -> np.ndarray:
    """The rotation vector of a rotation matrix whose angle is below pi."""
    skew = 0.5 * np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]])
    sine = float(np.linalg.norm(skew))
    cosine = float(np.clip((np.trace(matrix) - 1) / 2, -1.0, 1.0))
    angle = math.atan2(sine, cosine)
    return skew * (angle / sine if sine > 1e-12 else 1.0)


# --- known motion for a batch -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrajectoryFile:
    """One known trajectory, for photos: every photo of a batch is restored with it."""

    path: Path
    poses: np.ndarray

    @property
    def source(self) -> str:
        return f"file {self.path}"

    def photo(self) -> np.ndarray:
        return self.poses

    def frame(self, number: int, timestamp_s: float) -> np.ndarray:
        raise MotionError(f"{self.path}: a trajectory file gives one photo's motion; for a video give --gyro")


#: Under a rolling shutter the image is restored in horizontal bands, each with its middle row's trajectory; a band
#: spans at most this much of the readout, so its rows' exposures are at most half of it off their band's middle
#: row's (`experiments.gyro_errors`: shifting a whole exposure by 2 ms cost 0.5 dB of +3.2).
BAND_READOUT_S = 0.0025


@dataclass(frozen=True)
class RowMotion:
    """Motion that differs from row to row, as under a rolling shutter: `trajectory_at(fraction)` is the trajectory
    `(P, 3)` of the row at that fraction of the image's height (0 the top row, 1 the bottom), and the image is
    restored in `bands` horizontal bands, each with its middle row's trajectory."""

    trajectory_at: Callable[[float], np.ndarray]
    bands: int


def exposure_motion(
    log: GyroLog, start_s: float, duration_s: float, readout_s: float = 0.0, n_poses: int = N_POSES
) -> np.ndarray | RowMotion:
    """The motion of an exposure of `duration_s` from `start_s` (the log's clock; the top row's): one trajectory
    `(n_poses, 3)`, or under a rolling shutter with `readout_s` != 0 (from the top row's start to the bottom
    row's; negative when the bottom row is read first) a `RowMotion`, the row at fraction r of the height exposed
    from `start_s + r * readout_s`. Raises ValueError when a row's exposure leaves the log."""
    if not readout_s:
        return gyro_trajectory(log, start_s, start_s + duration_s, n_poses)
    for first_or_last_row in (start_s, start_s + readout_s):  # refused now if either runs out of the log
        gyro_trajectory(log, first_or_last_row, first_or_last_row + duration_s, n_poses)

    def trajectory_at(fraction: float) -> np.ndarray:
        row_start = start_s + readout_s * fraction
        return gyro_trajectory(log, row_start, row_start + duration_s, n_poses)

    return RowMotion(trajectory_at, bands=max(1, math.ceil(abs(readout_s) / BAND_READOUT_S - 1e-9)))


@dataclass(frozen=True)
class FrameTimes:
    """Each video frame's exposure in the gyroscope log's clock, as a camera's per-frame metadata gives it (on
    Android: SENSOR_TIMESTAMP, SENSOR_EXPOSURE_TIME, SENSOR_ROLLING_SHUTTER_SKEW): the top row's exposure start
    and the exposure time (s), and the readout time when recorded (negative: read bottom to top), one row per
    frame in order."""

    path: Path
    start_s: np.ndarray
    exposure_s: np.ndarray
    readout_s: np.ndarray | None = None


def read_frame_times(path: str | Path) -> FrameTimes:
    """A CSV with the columns `exposure_start_s`, `exposure_s` and, optionally, `readout_s`; one row per frame."""
    path = Path(path)
    try:
        rows = list(csv.DictReader(_read_text(path, "frame times").splitlines()))
    except csv.Error as error:
        raise MotionError(f"{path}: not a CSV of frame times ({error})") from None
    if not rows or any(name not in rows[0] for name in ("exposure_start_s", "exposure_s")):
        raise MotionError(
            f"{path}: frame times need the columns exposure_start_s, exposure_s (and optionally readout_s)"
        )
    names = ["exposure_start_s", "exposure_s", *(["readout_s"] if "readout_s" in rows[0] else [])]
    try:
        columns = np.array([[float(row[name]) for name in names] for row in rows], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise MotionError(f"{path}: a frame time is not a number ({error})") from None
    if not np.all(np.isfinite(columns)) or np.any(columns[:, 1] <= 0):
        raise MotionError(f"{path}: exposure times must be positive, and every time finite")
    readout = columns[:, 2] if len(names) == 3 else None
    return FrameTimes(path, columns[:, 0], columns[:, 1], readout)


@dataclass(frozen=True)
class GyroMotion:
    """A gyroscope log and the exposure in its clock: `start_s` and `duration_s` for a photo (None: the log's whole
    span); a video frame is exposed for `duration_s` from `start_s` plus its timestamp in the video, unless
    `frame_times` give each frame's. With a rolling shutter's `readout_s` (from the top row's start to the bottom
    row's, negative read upwards), each row's exposure starts later than the one above (or below) in proportion,
    and the motion is a `RowMotion`."""

    path: Path
    log: GyroLog
    n_poses: int
    start_s: float | None = None
    duration_s: float | None = None
    readout_s: float = 0.0
    frame_times: FrameTimes | None = None

    @property
    def source(self) -> str:
        upwards = " bottom to top" if self.readout_s < 0 else ""
        shutter = f", rolling shutter read out{upwards} in {abs(self.readout_s):g} s" if self.readout_s else ""
        return f"gyroscope log {self.path}, exposure {self._describe()}{shutter}"

    def photo(self) -> np.ndarray | RowMotion:
        """The photo's motion: its exposure, else the first of `frame_times`, else the whole log."""
        if self.frame_times is not None and self.start_s is None:
            return self.frame(0, 0.0)
        if self.start_s is None or self.duration_s is None:
            first, last = self.log.span_s
            readout = abs(self.readout_s)
            if last - first <= readout:
                raise MotionError(f"{self.path}: the log is too short for a readout of {readout:g} s")
            # The row read first starts with the log, the row read last ends with it.
            return self._motion(first + max(0.0, -self.readout_s), last - first - readout)
        return self._motion(self.start_s, self.duration_s)

    def frame(self, number: int, timestamp_s: float) -> np.ndarray | RowMotion:
        """Frame `number`'s motion (from 0), the frame shown at `timestamp_s` in the video."""
        times = self.frame_times
        if times is not None:
            if number >= len(times.start_s):
                raise MotionError(f"{times.path}: has {len(times.start_s)} frames' times; the video has more")
            readout = self.readout_s if times.readout_s is None else float(times.readout_s[number])
            return self._motion(float(times.start_s[number]), float(times.exposure_s[number]), readout)
        if self.start_s is None or self.duration_s is None:
            raise MotionError(
                f"{self.path}: a video needs --exposure START,DURATION (a frame starts at START + its timestamp) "
                "or --frame-times"
            )
        return self._motion(self.start_s + timestamp_s, self.duration_s)

    def _motion(self, start_s: float, duration_s: float, readout_s: float | None = None) -> np.ndarray | RowMotion:
        readout = self.readout_s if readout_s is None else readout_s
        try:
            return exposure_motion(self.log, start_s, duration_s, readout, self.n_poses)
        except ValueError as error:
            raise MotionError(f"{self.path}: {error}") from None

    def _describe(self) -> str:
        if self.frame_times is not None:
            return f"per frame from {self.frame_times.path}"
        if self.start_s is None or self.duration_s is None:
            return "the whole log"
        return f"{self.duration_s:g} s from {self.start_s:g} s"


KnownMotion = TrajectoryFile | GyroMotion
#: What a Deblurrer restores with: one trajectory `(P, 3)`, or one per row.
Trajectory = np.ndarray | RowMotion
