"""Find the offset between a gyroscope log's clock and a video's, from the camera's turns between frames.

The rotation the frames show from one to the next is compared with the rotation the log integrates over the same
interval, for every candidate offset (and, on request, every way the gyroscope can sit in the camera, and every
window of the video, for the clock's drift).

Known-motion deblurring needs each exposure's place in the log's clock to a millisecond or two
(`experiments.gyro_errors`); one photo cannot tell it, but a video can. Between consecutive frames the camera
turns (rotational shake: the scene is far), so tracked features move by a homography `K R K^-1`, and `R` is the
scene's rotation between the frames. The log gives the camera's rotation between any two instants; the offset is
the shift of the frame times that makes the two agree best. A frame's timestamp plus the offset is then the
instant whose orientation its content shows, about the middle of its exposure.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from runtime.core.camera import intrinsics, intrinsics_inverse
from runtime.core.limits import FOCAL_LENGTH_PX
from runtime.core.motion import (
    AXES_SPECS,
    CAMERA_AXES,
    GyroLog,
    add_gyro_axes_argument,
    axes_matrix,
    exponentials,
    in_camera_axes,
    logarithm,
    read_gyro_log,
)
from runtime.io.lens import Lens, undistort_points
from runtime.io.media import MediaError, VideoReader, write_bytes, write_image
from runtime.io.presets import CameraPreset, read_camera_preset
from runtime.io.progress import Progress
from runtime.tools.charts import drift_chart, sync_chart

#: Features tracked between consecutive frames, and the fewest a frame pair needs to count.
MAX_FEATURES = 400
MIN_FEATURES = 20
#: Offsets searched first on this grid (s), then refined to `FINE_STEP_S` around the best.
COARSE_STEP_S = 0.002
FINE_STEP_S = 0.0001
#: Offsets searched by default: -0.5 to 0.5 s.
DEFAULT_SEARCH_S = 0.5
#: The next best mount must fit this many times worse for the axes found to count as clear.
CLEAR_AXES_MARGIN = 2.0
#: `find_drift` searches each window's offset this far (s) around the whole video's, and skips windows with fewer
#: tracked frame pairs than `MIN_WINDOW_PAIRS`.
DRIFT_SEARCH_S = 0.02
MIN_WINDOW_PAIRS = 10


@dataclass(frozen=True)
class FrameRotation:
    """The scene's rotation vector (rad) from the frame at `start_s` to the frame at `end_s` (video clock)."""

    start_s: float
    end_s: float
    rotation: np.ndarray


@dataclass(frozen=True)
class Sync:
    """The offset (s) to add to video times to get the log's, its mean angular mismatch (rad) per frame pair, and
    the mismatch at every offset searched (for a plot); with the gyroscope's axes (`--gyro-axes` spec) that fit
    best, and each spec searched with its least mismatch on the coarse grid."""

    offset_s: float
    mismatch_rad: float
    pairs: int
    searched_s: np.ndarray
    mismatches_rad: np.ndarray
    axes: str = CAMERA_AXES
    axes_mismatches_rad: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Drift:
    """The log's clock against the video's as a line fitted to the offsets found in windows of the video: the
    offset (s) at video time 0 and its rate (s per s of video; 1e6 x rate is the drift in ppm)."""

    offset_s: float
    rate: float
    window_times_s: np.ndarray
    window_offsets_s: np.ndarray

    def offset_at(self, video_time_s: float | np.ndarray) -> float | np.ndarray:
        return self.offset_s + self.rate * video_time_s

    @property
    def residual_s(self) -> float:
        """The largest distance (s) of a window's offset from the line."""
        return float(np.abs(self.window_offsets_s - self.offset_at(self.window_times_s)).max())


def frame_rotation(
    previous_gray: np.ndarray, gray: np.ndarray, camera: np.ndarray, lens: Lens | None = None
) -> np.ndarray | None:
    """The rotation vector `R` with `gray ~ previous_gray` moved by `K R K^-1`, from tracked corners (RANSAC
    homography, then the nearest rotation to `K^-1 H K`); None when too few features follow. With a `lens`, the
    corners are first moved to where the pinhole camera `camera` sees them (`runtime.io.lens.undistort_points`)."""
    corners = cv2.goodFeaturesToTrack(previous_gray, MAX_FEATURES, qualityLevel=0.01, minDistance=8)
    if corners is None or len(corners) < MIN_FEATURES:
        return None
    moved, status, _ = cv2.calcOpticalFlowPyrLK(previous_gray, gray, corners, np.empty_like(corners))
    found = status.ravel() == 1
    if found.sum() < MIN_FEATURES:
        return None
    before, after = corners[found].reshape(-1, 2), moved[found].reshape(-1, 2)
    if lens is not None:
        height, width = gray.shape[:2]
        focal = float(camera[0, 0])
        before = undistort_points(before, lens, height, width, focal)
        after = undistort_points(after, lens, height, width, focal)
    homography, inliers = cv2.findHomography(before, after, cv2.RANSAC, 1.0)
    if homography is None or inliers.sum() < MIN_FEATURES:
        return None
    inverse = intrinsics_inverse(camera)
    rotation = inverse @ homography @ np.asarray(camera, dtype=np.float64)
    left, _, right = np.linalg.svd(rotation / np.cbrt(np.linalg.det(rotation)))
    nearest = left @ right
    return logarithm(nearest if np.linalg.det(nearest) > 0 else -nearest)


def video_rotations(
    frames: Iterable[tuple[float, np.ndarray]],
    focal_length_px: float | None = None,
    preset: CameraPreset | None = None,
) -> list[FrameRotation]:
    """The rotation between each pair of consecutive `(timestamp_s, BGR or gray frame)`, the focal length in pixels
    of the frames (default: their longer side) or a camera preset's (its lens undistorted); pairs whose features
    cannot be followed are left out."""
    rotations: list[FrameRotation] = []
    previous: tuple[float, np.ndarray] | None = None
    camera: np.ndarray | None = None
    lens = None if preset is None else preset.lens
    for timestamp, frame in frames:
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if camera is None:
            height, width = gray.shape
            focal = preset.focal_length_at(height, width) if preset is not None else focal_length_px
            camera = intrinsics(height, width, focal)
        if previous is not None:
            rotation = frame_rotation(previous[1], gray, camera, lens)
            if rotation is not None:
                rotations.append(FrameRotation(previous[0], timestamp, rotation))
        previous = (timestamp, gray)
    return rotations


def mismatches(
    log: GyroLog, rotations: list[FrameRotation], offsets_s: Sequence[float], axes: Sequence[str] = (CAMERA_AXES,)
) -> np.ndarray:
    """`(len(axes), len(offsets_s))`: the mean angle (rad) between the frames' rotations and the log's over the same
    intervals shifted by each offset, the log's rates taken about the camera's axes as each spec says
    (`runtime.core.motion.axes_matrix`); infinite where an interval leaves the log."""
    mounts = np.stack([axes_matrix(spec) for spec in axes])
    seen = exponentials(np.stack([pair.rotation for pair in rotations]))
    starts, ends = np.array([pair.start_s for pair in rotations]), np.array([pair.end_s for pair in rotations])
    first, last = log.span_s
    result = np.full((len(axes), len(offsets_s)), math.inf)
    for column, offset in enumerate(offsets_s):
        if starts[0] + offset < first or ends[-1] + offset > last:
            continue
        # The camera's turn over each interval, in the log's axes; the scene turns by its transpose.
        turns = log.orientations_at(starts + offset).transpose(0, 2, 1) @ log.orientations_at(ends + offset)
        disagreement = mounts[:, None] @ turns[None] @ mounts.transpose(0, 2, 1)[:, None] @ seen[None]
        result[:, column] = _angles(disagreement).mean(axis=1)
    return result


def _angles(rotations: np.ndarray) -> np.ndarray:
    """The angles (rad) of rotation matrices `(..., 3, 3)`, accurate near zero."""
    skew = np.stack(
        [
            rotations[..., 2, 1] - rotations[..., 1, 2],
            rotations[..., 0, 2] - rotations[..., 2, 0],
            rotations[..., 1, 0] - rotations[..., 0, 1],
        ],
        axis=-1,
    )
    return np.arctan2(np.linalg.norm(skew, axis=-1), np.trace(rotations, axis1=-2, axis2=-1) - 1)


def find_offset(
    log: GyroLog,
    rotations: list[FrameRotation],
    search_s: tuple[float, float],
    axes: Sequence[str] = (CAMERA_AXES,),
) -> Sync:
    """The offset within `search_s` (s), and the spec among `axes`, that match the frames' rotations with the log's
    best: a grid of `COARSE_STEP_S` for every spec, then `FINE_STEP_S` around the best for the best spec. Raises
    ValueError when nothing can be compared."""
    if not rotations:
        raise ValueError("no pair of consecutive frames could be tracked: nothing to compare with the log")
    coarse = np.arange(search_s[0], search_s[1] + COARSE_STEP_S / 2, COARSE_STEP_S)
    coarse_mismatch = mismatches(log, rotations, coarse.tolist(), axes)
    if not np.isfinite(coarse_mismatch).any():
        raise ValueError(
            f"the log ({log.times_s[0]:g} to {log.times_s[-1]:g} s) does not cover the video shifted by any offset "
            f"in {search_s[0]:g} to {search_s[1]:g} s"
        )
    spec_index, offset_index = (
        int(i) for i in np.unravel_index(int(np.argmin(coarse_mismatch)), coarse_mismatch.shape)
    )
    best = float(coarse[offset_index])
    fine = np.arange(best - COARSE_STEP_S, best + COARSE_STEP_S + FINE_STEP_S / 2, FINE_STEP_S)
    fine_mismatch = mismatches(log, rotations, fine.tolist(), [axes[spec_index]])[0]
    index = int(np.argmin(fine_mismatch))
    searched = np.concatenate([coarse, fine])
    order = np.argsort(searched)
    return Sync(
        offset_s=float(fine[index]),
        mismatch_rad=float(fine_mismatch[index]),
        pairs=len(rotations),
        searched_s=searched[order],
        mismatches_rad=np.concatenate([coarse_mismatch[spec_index], fine_mismatch])[order],
        axes=axes[spec_index],
        axes_mismatches_rad={spec: float(row.min()) for spec, row in zip(axes, coarse_mismatch, strict=True)},
    )


def find_drift(log: GyroLog, rotations: list[FrameRotation], sync: Sync, window_s: float) -> Drift:
    """The clock drift over the video: `find_offset` in consecutive windows of `window_s` s of video (within
    `DRIFT_SEARCH_S` of the whole video's offset, with its axes), and the line through their offsets. Raises
    ValueError when fewer than two windows hold `MIN_WINDOW_PAIRS` tracked frame pairs."""
    starts = np.array([pair.start_s for pair in rotations])
    window_of = np.floor((starts - starts[0]) / window_s).astype(int)
    middles, offsets = [], []
    search = (sync.offset_s - DRIFT_SEARCH_S, sync.offset_s + DRIFT_SEARCH_S)
    for window in np.unique(window_of):
        members = [pair for pair, member in zip(rotations, window_of == window, strict=True) if member]
        if len(members) >= MIN_WINDOW_PAIRS:
            middles.append(float(np.mean([0.5 * (pair.start_s + pair.end_s) for pair in members])))
            offsets.append(find_offset(log, members, search, (sync.axes,)).offset_s)
    if len(offsets) < 2:
        raise ValueError(
            f"fewer than two windows of {window_s:g} s hold {MIN_WINDOW_PAIRS} tracked frame pairs: no drift to fit"
        )
    rate, offset = np.polyfit(middles, offsets, 1)
    return Drift(float(offset), float(rate), np.array(middles), np.array(offsets))


def read_video(
    video: Path,
    focal_length_px: float | None = None,
    max_frames: int | None = None,
    progress: Callable[[str], object] = lambda _: None,
    preset: CameraPreset | None = None,
) -> tuple[list[FrameRotation], np.ndarray]:
    """The rotations between a video file's consecutive frames (`video_rotations`: the focal length in pixels of
    the video, default its longer side, or a camera preset's), and every frame's container timestamp (s)."""
    reader = VideoReader(video)
    timestamps: list[float] = []

    def frames() -> Iterator[tuple[float, np.ndarray]]:
        for number, frame in enumerate(reader):
            if max_frames is not None and number >= max_frames:
                return
            progress(f"frame {number + 1}" + (f"/{reader.frame_count}" if reader.frame_count else ""))
            timestamps.append(reader.timestamp_s)
            yield reader.timestamp_s, frame

    try:
        rotations = video_rotations(frames(), focal_length_px, preset)
    finally:
        reader.close()
    return rotations, np.array(timestamps)


def sync_video(
    log: GyroLog,
    video: Path,
    focal_length_px: float | None = None,
    search_s: tuple[float, float] = (-DEFAULT_SEARCH_S, DEFAULT_SEARCH_S),
    max_frames: int | None = None,
    progress: Callable[[str], object] = lambda _: None,
    axes: Sequence[str] = (CAMERA_AXES,),
    preset: CameraPreset | None = None,
) -> Sync:
    """The offset of a video file against a gyroscope log, and its axes among `axes`: `find_offset` over the
    frames' rotations (`read_video`), each frame at its container timestamp."""
    rotations, _ = read_video(video, focal_length_px, max_frames, progress, preset)
    return find_offset(log, rotations, search_s, axes)


def frame_times_csv(timestamps_s: np.ndarray, offsets_s: np.ndarray, exposure_s: float, readout_s: float) -> str:
    """The frame times `runtime.deblur --frame-times` reads for frames shown at `timestamps_s` (video clock), the
    log's clock ahead of the video's by `offsets_s` at each: each exposure's start in the log's clock, for frames
    whose content shows the middle of their exposure at their middle row."""
    starts = timestamps_s + offsets_s - exposure_s / 2 - readout_s / 2
    head = "exposure_start_s,exposure_s" + (",readout_s" if readout_s else "")
    rows = [f"{start:.6f},{exposure_s:g}" + (f",{readout_s:g}" if readout_s else "") for start in starts]
    return "\n".join([head, *rows]) + "\n"


def axes_report(sync: Sync) -> str:
    """One line on the axes found: the spec, and how much worse the next best fits (a margin under
    `CLEAR_AXES_MARGIN` means the video turned too little about some axis to tell the mounts apart)."""
    ranked = sorted(sync.axes_mismatches_rad.items(), key=lambda item: item[1])
    line = f"axes {sync.axes} (the gyroscope axes along the camera's x, y, z)"
    if len(ranked) < 2:
        return line
    runner_up, runner_up_mismatch = ranked[1]
    margin = runner_up_mismatch / max(ranked[0][1], 1e-12)
    line += f"; the next best, {runner_up}, fits {margin:.1f}x worse"
    if margin < CLEAR_AXES_MARGIN:
        line += ": not a clear answer; film a video that turns about all three axes"
    return line


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m runtime.sync", description=__doc__.splitlines()[0])
    parse.add_argument("video", type=Path, metavar="VIDEO", help="a video filmed while the log was recorded")
    parse.add_argument(
        "--gyro",
        type=Path,
        required=True,
        metavar="LOG",
        help="gyroscope log, as runtime.deblur reads (CSV or .gcsv)",
    )
    add_gyro_axes_argument(parse)
    camera = parse.add_mutually_exclusive_group()
    camera.add_argument(
        "--focal-length", type=float, metavar="PX", help="in pixels of the video (default: its longer side)"
    )
    camera.add_argument(
        "--camera",
        type=Path,
        metavar="YAML",
        help="camera preset (or Gyroflow lens profile): its focal length, and its lens undistorted",
    )
    parse.add_argument(
        "--search",
        type=float,
        default=DEFAULT_SEARCH_S,
        metavar="S",
        help=f"search offsets from -S to S seconds (default {DEFAULT_SEARCH_S})",
    )
    parse.add_argument(
        "--find-axes",
        action="store_true",
        help="also find how the gyroscope sits in the camera: search all 24 square mounts (--gyro-axes specs)",
    )
    parse.add_argument(
        "--drift",
        type=float,
        metavar="S",
        help="also find how the offset drifts: find it in every S seconds of video and fit a line",
    )
    parse.add_argument(
        "--frame-times-out",
        type=Path,
        metavar="CSV",
        help="write each frame's exposure in the log's clock, for runtime.deblur --frame-times (needs --exposure-time)",
    )
    parse.add_argument(
        "--exposure-time", type=float, metavar="S", help="the frames' exposure time, for --frame-times-out"
    )
    parse.add_argument(
        "--readout-time",
        type=float,
        metavar="S",
        help="rolling shutter readout, from the top row's exposure start to the bottom row's (negative: read bottom "
        "to top), for the exposure starts (default: the log's, as a .gcsv states it, else 0)",
    )
    parse.add_argument("--max-frames", type=int, metavar="N", help="use the first N frames")
    parse.add_argument(
        "--plot", type=Path, metavar="PNG", help="also draw the mismatch against the offset (and the drift's line)"
    )
    return parse


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse meaningless options before the video is read; one line each."""
    positive = [("--focal-length", args.focal_length, "pixels"), ("--search", args.search, "seconds")]
    positive += [("--drift", args.drift, "seconds"), ("--exposure-time", args.exposure_time, "seconds")]
    for option, value, unit in positive:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{option} must be a positive number of {unit}, got {value}")
    if args.focal_length is not None:
        FOCAL_LENGTH_PX.check(args.focal_length, "--focal-length")
    if args.readout_time is not None and not math.isfinite(args.readout_time):
        raise ValueError(f"--readout-time must be a finite number of seconds, got {args.readout_time}")
    if args.max_frames is not None and args.max_frames < 2:
        raise ValueError(f"--max-frames must be at least 2, got {args.max_frames}")
    if args.find_axes and args.gyro_axes != CAMERA_AXES:
        raise ValueError("--find-axes searches every mount of the log as it is: leave out --gyro-axes")
    if (args.frame_times_out is None) != (args.exposure_time is None):
        raise ValueError("--frame-times-out and --exposure-time go together")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        _check_arguments(args)
        log = in_camera_axes(read_gyro_log(args.gyro), args.gyro_axes)
        readout = args.readout_time if args.readout_time is not None else log.readout_s or 0.0
        progress = Progress()
        preset = read_camera_preset(args.camera) if args.camera is not None else None
        rotations, timestamps = read_video(args.video, args.focal_length, args.max_frames, progress, preset)
        axes = AXES_SPECS if args.find_axes else (args.gyro_axes,)
        sync = find_offset(log, rotations, (-args.search, args.search), axes)
        drift = find_drift(log, rotations, sync, args.drift) if args.drift is not None else None
        progress.done()
        if args.frame_times_out is not None:
            offsets = drift.offset_at(timestamps) if drift is not None else np.full(len(timestamps), sync.offset_s)
            table = frame_times_csv(timestamps, np.asarray(offsets), args.exposure_time, readout)
            write_bytes(args.frame_times_out, table.encode())
    except (MediaError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"offset {sync.offset_s * 1000:+.1f} ms (log time = video time + offset); mean mismatch "
        f"{sync.mismatch_rad * 1000:.2f} mrad over {sync.pairs} frame pairs"
    )
    if args.find_axes:
        print(axes_report(sync))
    if drift is not None:
        print(
            f"clock drift {drift.rate * 1e6:+.0f} ppm: offset {drift.offset_s * 1000:+.2f} ms at video time 0, "
            f"{drift.offset_at(float(timestamps[-1])) * 1000:+.2f} ms at {timestamps[-1]:.1f} s "
            f"({len(drift.window_offsets_s)} windows of {args.drift:g} s, farthest {drift.residual_s * 1000:.2f} ms "
            "from the line)"
        )
    print(_deblur_advice(args, sync, drift, readout))
    if args.plot is not None:
        chart = sync_chart(sync.searched_s, sync.mismatches_rad, sync.offset_s)
        if drift is not None:
            chart = np.hstack(
                [chart, drift_chart(drift.window_times_s, drift.window_offsets_s, drift.offset_s, drift.rate)]
            )
        write_image(args.plot, chart)
    return 0


def _deblur_advice(args: argparse.Namespace, sync: Sync, drift: Drift | None, readout_s: float) -> str:
    """The runtime.deblur options that use what was found."""
    command = f"runtime.deblur --gyro {args.gyro}" + ("" if sync.axes == CAMERA_AXES else f" --gyro-axes {sync.axes}")
    command += "" if args.camera is None else f" --camera {args.camera}"
    if args.frame_times_out is not None:
        return f"{command} --frame-times {args.frame_times_out}"
    start = f"{sync.offset_s - readout_s / 2:.4f} - DURATION/2 (a frame shows the middle of its exposure"
    later = "after" if readout_s > 0 else "before"
    start += f", at its middle row, read out {abs(readout_s) * 500:g} ms {later} the top one)" if readout_s else ")"
    if drift is not None:
        start += "; the offset drifts, so --frame-times-out gives each frame its own start"
    return f"{command} --exposure START,DURATION with START = {start}"


if __name__ == "__main__":
    sys.exit(main())
