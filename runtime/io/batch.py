"""Deblur a batch of sources into an output folder: one sub-folder of results per source, failures collected.

Per image: the restored image (same bit depth, gray-ness and alpha as the input), the trajectory as JSON and CSV,
the kernel-field overlay, the trajectory plot, the reblurred image and, on request, the sharp-frame sequence
(PNG folder, GIF, MP4). Per video or camera: the restored video at the source's frame rate and the per-frame
trajectories as CSV (and, when refining, the per-frame reblur loss before and after refinement).

Each result folder is written whole or not at all (`runtime.io.results`): never over an input, through a link or
out of the output folder, nor mixed with another run's files. A result that is not finite (NaN or infinite values,
as an absurd noise level or focal length gives) is refused before anything is written. A source that fails is
reported in one line and the batch goes on. Ctrl-C or SIGTERM (`runtime.io.stopping`) stops the batch at the next
safe point: the source at hand leaves nothing (a camera keeps the frames restored so far, as it runs until
stopped), and the summary counts the sources not processed as skipped. With `Options.skip_done` a source whose
result folder already holds every file the run writes is left as it is (a re-run does what is missing).

`run_source` processes one source; `runtime.io.ray_batch` runs it on Ray workers, one Deblurrer each.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from runtime.core.backends.base import BackendError
from runtime.core.camera import scale_intrinsics
from runtime.core.deblurrer import Deblurrer, DeblurResult
from runtime.core.limits import FOCAL_LENGTH_PX
from runtime.core.motion import KnownMotion, MotionError
from runtime.io import pictures
from runtime.io.lens import Lens, undistort
from runtime.io.media import (
    ExifFocalLength,
    MediaError,
    VideoReader,
    VideoWriter,
    read_image,
    to_file_pixels,
    write_bytes,
    write_gif,
    write_image,
)
from runtime.io.presets import CameraPreset
from runtime.io.progress import Progress
from runtime.io.results import ResultFolder, protected_paths
from runtime.io.sources import Source
from runtime.io.stopping import Interrupted, StopRequest

SEQUENCE_FPS = 10.0
#: The GIF is a preview: its frames are shrunk to this longer side (the PNG frames and the MP4 keep full size).
SEQUENCE_GIF_MAX_SIDE = 800
#: The kernel overlay of a smaller image is drawn on an enlarged copy, so the kernels stay readable.
KERNEL_OVERLAY_MIN_SIDE = 512
#: Every file and folder a result folder may hold (relative, with `/`): what a rerun replaces with it.
OUTPUTS = re.compile(
    r"restored\.png|reblurred\.png|trajectory\.json|trajectory\.csv|kernels\.png|trajectory\.png"
    r"|sequence\.gif|sequence\.mp4|frames|frames/frame_\d+\.png|restored\.mp4|trajectories\.csv|refinement\.csv"
)


class ResultError(ValueError):
    """A restoration whose result cannot be written (not finite); one line naming the input."""


#: The columns of a photo's trajectory.csv and of a video's trajectories.csv (one row per pose, per frame).
TRAJECTORY_COLUMNS = ["pose", "pitch_rad", "yaw_rad", "roll_rad", "focal_length_px", "width_px", "height_px"]
VIDEO_TRAJECTORY_COLUMNS = ["frame", "pose", "pitch_rad", "yaw_rad", "roll_rad", "focal_length_px"]


@dataclass(frozen=True)
class Options:
    """How to process and what to write. `focal_length` is in pixels of the input as read (before resizing);
    a camera preset gives it instead, and with a lens calibration has each image undistorted first
    (`runtime.io.lens`). `motion`, when known (a trajectory file, a gyroscope log), replaces the trajectory net's
    estimate. `skip_done` leaves a source whose result folder already holds every file this run writes
    (`already_done`) as it is, so a re-run does only what is missing; otherwise a rerun replaces the folder."""

    outdir: Path
    focal_length: float | None = None
    camera_preset: CameraPreset | None = None
    max_side: int | None = None
    scale: float | None = None
    sequence: bool = False
    timings: bool = False
    max_frames: int | None = None
    motion: KnownMotion | None = None
    skip_done: bool = False


@dataclass
class Summary:
    """What a batch did: the sources done, those failed (location, reason), those skipped because it was
    stopped, the signal that stopped it (`SIGINT`, `SIGTERM`; None: it ran to the end) and, with
    `Options.skip_done`, the sources left as they were because their results were already complete."""

    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: str | None = None
    seconds: float = 0.0
    already_done: list[str] = field(default_factory=list)


def run_batch(
    deblurrer: Deblurrer,
    sources: list[Source],
    options: Options,
    progress: Callable[[str], None] | None = None,
    stop: StopRequest | None = None,
) -> Summary:
    """Process every source; a failure is recorded with its reason and the next source goes on. A stop requested
    through `stop` (or a KeyboardInterrupt) ends the batch at the next safe point."""
    progress = progress or Progress()
    stop = stop or StopRequest()
    inputs = protected_paths(source.location for source in sources if isinstance(source.location, Path))
    summary = Summary()
    started = time.perf_counter()
    for index, source in enumerate(sources, 1):
        if stop.requested:
            break
        if options.skip_done and already_done(source, options, deblurrer.bundle.n_positions):
            summary.already_done.append(source.name)
            continue
        label = f"[{index}/{len(sources)}] {source.name}"
        progress(label)
        try:
            told = functools.partial(_prefixed, progress, label)
            failure = run_source(deblurrer, source, options, inputs, told, stop)
        except (Interrupted, KeyboardInterrupt):
            stop.request(signal.SIGINT)  # a KeyboardInterrupt: no handler recorded the request
            break
        if failure is None:
            summary.done.append(source.name)
        else:
            summary.failed.append((str(source.location), failure))
    processed = len(summary.done) + len(summary.failed) + len(summary.already_done)
    summary.skipped = [source.name for source in sources[processed:]]
    summary.interrupted = stop.name
    summary.seconds = time.perf_counter() - started
    if isinstance(progress, Progress):
        progress.done()
    return summary


def run_source(
    deblurrer: Deblurrer,
    source: Source,
    options: Options,
    inputs: frozenset[Path],
    progress: Callable[[str], None],
    stop: StopRequest,
) -> str | None:
    """Process one source into its result folder, as a batch does each (a Ray worker too): None when done, else
    why it failed, the folder then left as it was. `inputs` are the batch's `protected_paths`. A stop at a safe
    point (Interrupted) or a KeyboardInterrupt goes through, leaving nothing."""
    try:
        with ResultFolder(options.outdir, source.name, inputs, OUTPUTS) as target:
            if source.kind == "image":
                _image(deblurrer, source, options, target, progress, stop.check)
            else:
                _video(deblurrer, source, options, target, progress, stop)
    except (MediaError, ValueError, OSError, BackendError, cv2.error) as error:
        return str(error)
    except MemoryError:
        return "out of memory"
    return None


def expected_outputs(source: Source, options: Options, n_positions: int) -> list[str]:
    """The files (relative, with `/`) a run with these options always writes for a source, `n_positions` being
    the bundle's (one sharp frame each); none for a camera, which runs until stopped. A video's refinement.csv,
    written only when its frames were refined, is not among them."""
    if source.kind == "camera":
        return []
    if source.kind == "video":
        return ["restored.mp4", "trajectories.csv"]
    outputs = ["restored.png", "reblurred.png", "trajectory.json", "trajectory.csv", "kernels.png", "trajectory.png"]
    if options.sequence:
        outputs += ["sequence.gif", "sequence.mp4", *(f"frames/frame_{i:02d}.png" for i in range(n_positions))]
    return outputs


def already_done(source: Source, options: Options, n_positions: int) -> bool:
    """Whether the source's result folder (not a link) already holds every file this run writes: complete, as a
    result folder is put in place whole (`runtime.io.results`). What it holds is not compared with this run's
    settings: `Options.skip_done` is for re-running the same command."""
    expected = expected_outputs(source, options, n_positions)
    folder = options.outdir / source.name
    return bool(expected) and not folder.is_symlink() and all((folder / name).is_file() for name in expected)


def _prefixed(progress: Callable[[str], None], label: str, text: str) -> None:
    progress(f"{label} {text}")


def focal_length_for(
    options: Options,
    shape: tuple[int, ...],
    processed_scale: float,
    exif: ExifFocalLength | None = None,
    photo: Path | None = None,
) -> tuple[float | None, str]:
    """The focal length in pixels of the processed image (None for the default, the longer side), and where it
    came from: --focal-length, else --camera, else the photo's EXIF, else the default.

    `shape` is the input's (H, W) as read; `processed_scale` the resize factor applied to it since.
    """
    if options.focal_length is not None:
        return options.focal_length * processed_scale, "--focal-length"
    if options.camera_preset is not None:
        return options.camera_preset.focal_length_at(shape[0], shape[1]) * processed_scale, "--camera"
    if exif is not None:  # any photo can carry an absurd one: refused when it would be used
        FOCAL_LENGTH_PX.check(exif.pixels, f"{photo} EXIF ({exif.source})" if photo else f"EXIF ({exif.source})")
        return exif.pixels * processed_scale, f"EXIF: {exif.source}"
    return None, "default: the longer side"


def _lens(options: Options) -> Lens | None:
    """The lens whose distortion is undone before deblurring (a camera preset's), if any."""
    return None if options.camera_preset is None else options.camera_preset.lens


def _resize(rgb: np.ndarray, options: Options) -> tuple[np.ndarray, float]:
    """Apply --scale and --max-side; returns the image and the factor applied (on the longer side)."""
    height, width = rgb.shape[:2]
    factor = options.scale or 1.0
    if options.max_side is not None:
        factor = min(factor, options.max_side / max(height, width))
    if factor == 1.0:
        return rgb, 1.0
    resized = _scaled(rgb, factor)
    return resized, max(resized.shape[:2]) / max(height, width)


def _scaled(image: np.ndarray, factor: float) -> np.ndarray:
    """An image resized by `factor` (area-averaged when shrinking, bicubic when enlarging); itself at 1."""
    if factor == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)


def _image(
    deblurrer: Deblurrer,
    source: Source,
    options: Options,
    target: Path,
    progress: Callable[[str], None],
    checkpoint: Callable[[], None],
) -> None:
    """Restore one photo into `target`; `checkpoint` is called between steps (it raises to stop)."""
    assert isinstance(source.location, Path)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    picture = read_image(source.location)
    checkpoint()
    shape = picture.rgb.shape[:2]
    rgb, factor = _resize(picture.rgb, options)
    if factor != 1.0:
        picture = replace(picture, rgb=rgb, alpha=_resize_alpha(picture.alpha, rgb.shape[:2]))
    timings["read"] = time.perf_counter() - started
    focal_length, focal_length_source = focal_length_for(
        options, shape, factor, picture.exif_focal_length, source.location
    )
    lens = _lens(options)
    if focal_length is not None and lens is not None:
        rgb = undistort(rgb, lens, focal_length)
        alpha = None if picture.alpha is None else undistort(picture.alpha, lens, focal_length)
        picture = replace(picture, rgb=rgb, alpha=alpha)
    trajectory = options.motion.photo() if options.motion else None
    result = deblurrer.restore(rgb, focal_length, trajectory=trajectory, progress=progress)
    check_finite(result, str(source.location))
    checkpoint()
    timings.update(result.timings)
    started = time.perf_counter()
    restored = np.clip(result.restored, 0, 1)
    motion = result.row_motion or result.trajectory
    if options.sequence:
        frames, reblurred = deblurrer.sequence(restored, motion, result.intrinsics, eight_bit=True)
        timings["sequence"] = time.perf_counter() - started
    else:
        reblurred = deblurrer.reblur(restored, motion, result.intrinsics)
        timings["reblur"] = time.perf_counter() - started
    checkpoint()

    started = time.perf_counter()
    write_image(target / "restored.png", to_file_pixels(restored, picture))
    write_image(target / "reblurred.png", to_file_pixels(reblurred, picture))
    trajectory_source = options.motion.source if options.motion else "estimated by the trajectory net"
    undistorted = None if lens is None else lens.model
    _write_trajectory(target, result, rgb.shape[:2], deblurrer, focal_length_source, trajectory_source, undistorted)
    write_image(target / "kernels.png", _kernel_overlay(rgb, result))
    plot = pictures.trajectory_plot(result.trajectory, float(result.intrinsics[0, 0]), rgb.shape[:2])
    write_image(target / "trajectory.png", plot)
    if options.sequence:
        _write_sequence(target, frames, checkpoint)
    timings["write"] = time.perf_counter() - started
    if options.timings:
        print(f"{source.name}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()))


def check_finite(result: DeblurResult, where: str) -> None:
    """Refuse a result with NaN or infinite values (the restored image, the trajectory or the intrinsics): written,
    it would be a black image or a NaN trajectory reported as done."""
    for what, values in (
        ("restored image", result.restored),
        ("trajectory", result.trajectory),
        ("camera intrinsics", result.intrinsics),
    ):
        if not np.isfinite(values).all():
            raise ResultError(
                f"{where}: the {what} holds NaN or infinite values (an absurd --sigma or focal length gives that); "
                "nothing written"
            )


def _kernel_overlay(rgb: np.ndarray, result: DeblurResult) -> np.ndarray:
    """The kernel field over the processed image, enlarged first when it is too small to draw kernels on."""
    factor = max(1.0, KERNEL_OVERLAY_MIN_SIDE / max(rgb.shape[:2]))
    preview = _scaled(to_file_pixels(rgb), factor)
    camera = scale_intrinsics(result.intrinsics, factor)
    motion = result.row_motion.trajectory_at if result.row_motion else result.trajectory
    return pictures.kernel_field(preview, motion, camera)


def _write_sequence(target: Path, frames_rgb: np.ndarray, checkpoint: Callable[[], None]) -> None:
    """The sharp frames (`(P, H, W, 3)` uint8 RGB) as PNGs, an MP4 and a looping GIF preview (at most
    `SEQUENCE_GIF_MAX_SIDE`), all at `SEQUENCE_FPS`; one frame at a time is turned to BGR for the files, and
    `checkpoint` called after each."""
    height, width = frames_rgb.shape[1:3]
    factor = min(1.0, SEQUENCE_GIF_MAX_SIDE / max(height, width))
    previews = []
    writer = VideoWriter(target / "sequence.mp4", SEQUENCE_FPS, (width, height))
    try:
        for number, frame in enumerate(frames_rgb):
            bgr = np.ascontiguousarray(frame[..., ::-1])
            write_image(target / "frames" / f"frame_{number:02d}.png", bgr)
            writer.write(bgr)
            previews.append(_scaled(bgr, factor)[..., ::-1])
            checkpoint()
    except BaseException:
        writer.abort()
        raise
    writer.close()
    write_gif(target / "sequence.gif", previews, SEQUENCE_FPS)


def _resize_alpha(alpha: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    return None if alpha is None else cv2.resize(alpha, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _video(
    deblurrer: Deblurrer,
    source: Source,
    options: Options,
    target: Path,
    progress: Callable[[str], None],
    stop: StopRequest,
) -> None:
    """Restore a video or camera frame by frame into `target`. A stop request ends a camera (its frames so far are
    its result) and interrupts a video file (checked before each frame)."""
    if options.motion is not None and source.kind == "camera":
        raise MotionError(f"camera {source.location}: known motion needs a video file, whose frame times are known")
    reader = VideoReader(source.location)
    writer: VideoWriter | None = None
    rows: list[list[object]] = []
    refined: list[list[object]] = []
    timings: dict[str, list[float]] = {}
    try:
        for number, frame in enumerate(reader):
            if options.max_frames is not None and number >= options.max_frames:
                break
            if stop.requested and source.kind == "camera":
                break
            stop.check()
            rgb, factor = _resize(frame[..., ::-1].astype(np.float32) / np.float32(255), options)
            focal_length = focal_length_for(options, frame.shape[:2], factor)[0]
            if focal_length is not None and (lens := _lens(options)) is not None:
                rgb = undistort(rgb, lens, focal_length)
            trajectory = options.motion.frame(number, reader.timestamp_s) if options.motion else None
            result = deblurrer.restore(rgb, focal_length, trajectory=trajectory)
            check_finite(result, f"{source.location}: frame {number}")
            restored = to_file_pixels(np.clip(result.restored, 0, 1))
            if writer is None:
                writer = VideoWriter(target / "restored.mp4", reader.fps, (restored.shape[1], restored.shape[0]))
            writer.write(restored)
            rows += [
                [number, pose, *map(float, angles), float(result.intrinsics[0, 0])]
                for pose, angles in enumerate(result.trajectory)
            ]
            if result.refinement is not None:
                refined.append([number, result.refinement.loss_before, result.refinement.loss_after])
            for stage, seconds in result.timings.items():
                timings.setdefault(stage, []).append(seconds)
            total = f"/{reader.frame_count}" if reader.frame_count else ""
            progress(f"frame {number + 1}{total}")
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        reader.close()
    if writer is None:
        raise MediaError(f"{source.location}: no frames could be read")
    writer.close()
    write_csv(target / "trajectories.csv", VIDEO_TRAJECTORY_COLUMNS, rows)
    if refined:
        write_csv(target / "refinement.csv", ["frame", "reblur_loss_before", "reblur_loss_after"], refined)
    if options.timings:
        stages = ", ".join(f"{k} {float(np.median(v)) * 1000:.0f} ms" for k, v in timings.items())
        print(f"{source.name}: {len(rows) // deblurrer.bundle.n_positions} frames, per frame (median): {stages}")


def _write_trajectory(
    target: Path,
    result: DeblurResult,
    shape: tuple[int, ...],
    deblurrer: Deblurrer,
    focal_length_source: str,
    trajectory_source: str,
    undistorted: str | None,
) -> None:
    height, width = shape[:2]
    camera = result.intrinsics
    description = {
        "convention": "rotation vectors (pitch, yaw, roll) in radians, one per pose, in time order up to reversal",
        "focal_length_px": float(camera[0, 0]),
        "focal_length_source": focal_length_source,
        "principal_point_px": [float(camera[0, 2]), float(camera[1, 2])],
        "image_size": {"width": width, "height": height},
        # The lens model whose distortion was undone first (null: none); the outputs are then in the pinhole view.
        "undistorted": undistorted,
        "poses": result.trajectory.astype(float).tolist(),
        "trajectory_source": trajectory_source,
        # With a rolling shutter the poses are the middle row's, and `tiles` counts the bands restored.
        "rolling_shutter": result.row_motion is not None,
        "backend": deblurrer.backend,
        # The --estimation-side setting (null: the trajectory net saw the image at full resolution).
        "estimation_side_px": deblurrer.restore_settings.estimation_side,
        "timings_s": result.timings,
        "tiles": result.tiles,
        "refinement": refinement_record(result),
    }
    write_bytes(target / "trajectory.json", (json.dumps(description, indent=2) + "\n").encode())
    rows = [
        [pose, *map(float, angles), float(camera[0, 0]), width, height] for pose, angles in enumerate(result.trajectory)
    ]
    write_csv(
        target / "trajectory.csv",
        TRAJECTORY_COLUMNS,
        rows,
    )


def refinement_record(result: DeblurResult) -> dict[str, object] | None:
    """Whether and how much the trajectory was refined, for the output files (None: not refined)."""
    refinement = result.refinement
    if refinement is None:
        return None
    return {
        "reblur_loss_before": refinement.loss_before,
        "reblur_loss_after": refinement.loss_after,
        "relative_change": refinement.loss_after / refinement.loss_before - 1 if refinement.loss_before > 0 else 0.0,
        "steps_run": refinement.steps_run,
        "stopped": refinement.stopped,
        "restored_with_refined_trajectory": "restoration_rerun" in result.timings,
    }


def write_csv(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> None:
    """A table of results as a CSV file, written atomically (trajectory.csv, trajectories.csv, refinement.csv)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_bytes(path, text.getvalue().encode())


def report(summary: Summary, errors: list[str], outdir: Path) -> list[str]:
    """Print a run's summary line, the inputs left as they were (`--skip-done`) and the failures (`errors` of the
    inputs that never ran first), one line each, to stderr; returns the failures. Shared by every command that
    writes result folders (`runtime.deblur`, its Ray mode, `runtime.client`)."""
    failures = [
        *errors,
        *(
            one_line(reason if reason.startswith(location) else f"{location}: {reason}")
            for location, reason in summary.failed
        ),
    ]
    kept = f", {len(summary.already_done)} already done" if summary.already_done else ""
    counts = f"{len(summary.done)} done{kept}, {len(failures)} failed"
    if summary.interrupted is not None:
        counts = f"interrupted by {summary.interrupted}: {counts}, {len(summary.skipped)} skipped"
    print(f"{counts} in {summary.seconds:.1f} s; results in {outdir}", file=sys.stderr)
    for name in summary.already_done:
        print(f"already done: {outdir / name}", file=sys.stderr)
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    return failures


def one_line(text: str) -> str:
    """A multi-line message (an exception's) as one line."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
