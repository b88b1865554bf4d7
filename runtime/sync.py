"""Find the offset between a gyroscope log's clock and a video's, from the camera's turns between frames.

The rotation the frames show from one to the next is compared with the rotation the log integrates over the same
interval, for every candidate offset.

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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.camera import intrinsics, intrinsics_inverse
from runtime.media import MediaError, VideoReader, write_image
from runtime.motion import GyroLog, add_gyro_axes_argument, exponential, in_camera_axes, logarithm, read_gyro_log
from runtime.progress import Progress
from runtime.visualize import sync_chart

#: Features tracked between consecutive frames, and the fewest a frame pair needs to count.
MAX_FEATURES = 400
MIN_FEATURES = 20
#: Offsets searched first on this grid (s), then refined to `FINE_STEP_S` around the best.
COARSE_STEP_S = 0.002
FINE_STEP_S = 0.0001
#: Offsets searched by default: -0.5 to 0.5 s.
DEFAULT_SEARCH_S = 0.5


@dataclass(frozen=True)
class FrameRotation:
    """The scene's rotation vector (rad) from the frame at `start_s` to the frame at `end_s` (video clock)."""

    start_s: float
    end_s: float
    rotation: np.ndarray


@dataclass(frozen=True)
class Sync:
    """The offset (s) to add to video times to get the log's, its mean angular mismatch (rad) per frame pair,
    and the mismatch at every offset searched (for a plot)."""

    offset_s: float
    mismatch_rad: float
    pairs: int
    searched_s: np.ndarray
    mismatches_rad: np.ndarray


def frame_rotation(previous_gray: np.ndarray, gray: np.ndarray, camera: np.ndarray) -> np.ndarray | None:
    """The rotation vector `R` with `gray ~ previous_gray` moved by `K R K^-1`, from tracked corners (RANSAC
    homography, then the nearest rotation to `K^-1 H K`); None when too few features follow."""
    corners = cv2.goodFeaturesToTrack(previous_gray, MAX_FEATURES, qualityLevel=0.01, minDistance=8)
    if corners is None or len(corners) < MIN_FEATURES:
        return None
    moved, status, _ = cv2.calcOpticalFlowPyrLK(previous_gray, gray, corners, np.empty_like(corners))
    found = status.ravel() == 1
    if found.sum() < MIN_FEATURES:
        return None
    homography, inliers = cv2.findHomography(corners[found], moved[found], cv2.RANSAC, 1.0)
    if homography is None or inliers.sum() < MIN_FEATURES:
        return None
    inverse = intrinsics_inverse(camera)
    rotation = inverse @ homography @ np.asarray(camera, dtype=np.float64)
    left, _, right = np.linalg.svd(rotation / np.cbrt(np.linalg.det(rotation)))
    nearest = left @ right
    return logarithm(nearest if np.linalg.det(nearest) > 0 else -nearest)


def video_rotations(
    frames: Iterable[tuple[float, np.ndarray]], focal_length_px: float | None = None
) -> list[FrameRotation]:
    """The rotation between each pair of consecutive `(timestamp_s, BGR or gray frame)`, the focal length in pixels
    of the frames (default: their longer side); pairs whose features cannot be followed are left out."""
    rotations: list[FrameRotation] = []
    previous: tuple[float, np.ndarray] | None = None
    camera: np.ndarray | None = None
    for timestamp, frame in frames:
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if camera is None:
            camera = intrinsics(gray.shape[0], gray.shape[1], focal_length_px)
        if previous is not None:
            rotation = frame_rotation(previous[1], gray, camera)
            if rotation is not None:
                rotations.append(FrameRotation(previous[0], timestamp, rotation))
        previous = (timestamp, gray)
    return rotations


def mismatch(log: GyroLog, rotations: list[FrameRotation], offset_s: float) -> float:
    """The mean angle (rad) between the frames' rotations and the log's over the same intervals shifted by
    `offset_s`; infinite when an interval leaves the log."""
    first, last = log.span_s
    angles = []
    for pair in rotations:
        start, end = pair.start_s + offset_s, pair.end_s + offset_s
        if start < first or end > last:
            return math.inf
        scene_turn = (log.orientation_at(start).T @ log.orientation_at(end)).T
        angles.append(float(np.linalg.norm(logarithm(scene_turn.T @ exponential(pair.rotation)))))
    return float(np.mean(angles)) if angles else math.inf


def find_offset(log: GyroLog, rotations: list[FrameRotation], search_s: tuple[float, float]) -> Sync:
    """The offset within `search_s` (s) that matches the frames' rotations with the log's best: a grid of
    `COARSE_STEP_S`, then `FINE_STEP_S` around its best. Raises ValueError when nothing can be compared."""
    if not rotations:
        raise ValueError("no pair of consecutive frames could be tracked: nothing to compare with the log")
    coarse = np.arange(search_s[0], search_s[1] + COARSE_STEP_S / 2, COARSE_STEP_S)
    coarse_mismatch = np.array([mismatch(log, rotations, float(offset)) for offset in coarse])
    if not np.isfinite(coarse_mismatch).any():
        raise ValueError(
            f"the log ({log.times_s[0]:g} to {log.times_s[-1]:g} s) does not cover the video shifted by any offset "
            f"in {search_s[0]:g} to {search_s[1]:g} s"
        )
    best = float(coarse[int(np.argmin(coarse_mismatch))])
    fine = np.arange(best - COARSE_STEP_S, best + COARSE_STEP_S + FINE_STEP_S / 2, FINE_STEP_S)
    fine_mismatch = np.array([mismatch(log, rotations, float(offset)) for offset in fine])
    index = int(np.argmin(fine_mismatch))
    searched = np.concatenate([coarse, fine])
    order = np.argsort(searched)
    return Sync(
        offset_s=float(fine[index]),
        mismatch_rad=float(fine_mismatch[index]),
        pairs=len(rotations),
        searched_s=searched[order],
        mismatches_rad=np.concatenate([coarse_mismatch, fine_mismatch])[order],
    )


def sync_video(
    log: GyroLog,
    video: Path,
    focal_length_px: float | None = None,
    search_s: tuple[float, float] = (-DEFAULT_SEARCH_S, DEFAULT_SEARCH_S),
    max_frames: int | None = None,
    progress: Callable[[str], object] = lambda _: None,
) -> Sync:
    """The offset of a video file against a gyroscope log: `find_offset` over its frames' rotations (the focal
    length in pixels of the video; default its longer side), each frame at its container timestamp."""
    reader = VideoReader(video)

    def frames() -> Iterator[tuple[float, np.ndarray]]:
        for number, frame in enumerate(reader):
            if max_frames is not None and number >= max_frames:
                return
            progress(f"frame {number + 1}" + (f"/{reader.frame_count}" if reader.frame_count else ""))
            yield reader.timestamp_s, frame

    try:
        rotations = video_rotations(frames(), focal_length_px)
    finally:
        reader.close()
    return find_offset(log, rotations, search_s)


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m runtime.sync", description=__doc__.splitlines()[0])
    parse.add_argument("video", type=Path, metavar="VIDEO", help="a video filmed while the log was recorded")
    parse.add_argument("--gyro", type=Path, required=True, metavar="LOG", help="gyroscope log, as runtime.deblur reads")
    add_gyro_axes_argument(parse)
    parse.add_argument(
        "--focal-length", type=float, metavar="PX", help="in pixels of the video (default: its longer side)"
    )
    parse.add_argument(
        "--search",
        type=float,
        default=DEFAULT_SEARCH_S,
        metavar="S",
        help=f"search offsets from -S to S seconds (default {DEFAULT_SEARCH_S})",
    )
    parse.add_argument("--max-frames", type=int, metavar="N", help="use the first N frames")
    parse.add_argument("--plot", type=Path, metavar="PNG", help="also draw the mismatch against the offset")
    return parse


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.focal_length is not None and not (math.isfinite(args.focal_length) and args.focal_length > 0):
            raise ValueError(f"--focal-length must be a positive number of pixels, got {args.focal_length}")
        if not (math.isfinite(args.search) and args.search > 0):
            raise ValueError(f"--search must be a positive number of seconds, got {args.search}")
        if args.max_frames is not None and args.max_frames < 2:
            raise ValueError(f"--max-frames must be at least 2, got {args.max_frames}")
        log = in_camera_axes(read_gyro_log(args.gyro), args.gyro_axes)
        progress = Progress()
        sync = sync_video(log, args.video, args.focal_length, (-args.search, args.search), args.max_frames, progress)
        progress.done()
    except (MediaError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"offset {sync.offset_s * 1000:+.1f} ms (log time = video time + offset); mean mismatch "
        f"{sync.mismatch_rad * 1000:.2f} mrad over {sync.pairs} frame pairs\n"
        f"runtime.deblur --gyro {args.gyro} --exposure START,DURATION with START = {sync.offset_s:.4f} - DURATION/2 "
        "(a frame shows the middle of its exposure; with --readout-time R, also - R/2)"
    )
    if args.plot is not None:
        write_image(args.plot, sync_chart(sync.searched_s, sync.mismatches_rad, sync.offset_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
