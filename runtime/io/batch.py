"""Deblur a batch of sources into an output folder: one sub-folder of results per source, failures collected.

Per image: the restored image (same bit depth, gray-ness and alpha as the input), the trajectory as JSON and CSV,
the kernel-field overlay, the trajectory plot, the reblurred image and, on request, the sharp-frame sequence
(PNG folder, GIF, MP4). Per video or camera: the restored video at the source's frame rate and the per-frame
trajectories as CSV (and, when refining, the per-frame reblur loss before and after refinement). A source that
fails is reported and the batch goes on; nothing is written over an input.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from runtime.core.backends.base import BackendError
from runtime.core.camera import scale_intrinsics
from runtime.core.deblurrer import Deblurrer, DeblurResult
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
from runtime.io.sources import Source

SEQUENCE_FPS = 10.0
#: The GIF is a preview: its frames are shrunk to this longer side (the PNG frames and the MP4 keep full size).
SEQUENCE_GIF_MAX_SIDE = 800
#: The kernel overlay of a smaller image is drawn on an enlarged copy, so the kernels stay readable.
KERNEL_OVERLAY_MIN_SIDE = 512


@dataclass(frozen=True)
class Options:
    """How to process and what to write. `focal_length` is in pixels of the input as read (before resizing);
    a camera preset gives it instead, and with a lens calibration has each image undistorted first
    (`runtime.io.lens`). `motion`, when known (a trajectory file, a gyroscope log), replaces the trajectory net's
    estimate."""

    outdir: Path
    focal_length: float | None = None
    camera_preset: CameraPreset | None = None
    max_side: int | None = None
    scale: float | None = None
    sequence: bool = False
    timings: bool = False
    max_frames: int | None = None
    motion: KnownMotion | None = None


@dataclass
class Summary:
    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def run_batch(
    deblurrer: Deblurrer, sources: list[Source], options: Options, progress: Callable[[str], None] | None = None
) -> Summary:
    """Process every source; a failure is recorded with its reason and the next source goes on."""
    progress = progress or Progress()
    inputs = {source.location.resolve() for source in sources if isinstance(source.location, Path)}
    summary = Summary()
    started = time.perf_counter()
    for index, source in enumerate(sources, 1):
        label = f"[{index}/{len(sources)}] {source.name}"
        progress(label)
        target = options.outdir / source.name
        try:
            if target.resolve() in inputs or any(path.parent == target.resolve() for path in inputs):
                raise MediaError(f"{target}: results would go where an input lies; choose another -o")
            told = functools.partial(_prefixed, progress, label)
            if source.kind == "image":
                _image(deblurrer, source, options, target, told)
            else:
                _video(deblurrer, source, options, target, told)
            summary.done.append(source.name)
        except (MediaError, ValueError, OSError, BackendError, cv2.error) as error:
            summary.failed.append((str(source.location), str(error)))
    summary.seconds = time.perf_counter() - started
    if isinstance(progress, Progress):
        progress.done()
    return summary


def _prefixed(progress: Callable[[str], None], label: str, text: str) -> None:
    progress(f"{label} {text}")


def focal_length_for(
    options: Options, shape: tuple[int, ...], processed_scale: float, exif: ExifFocalLength | None = None
) -> tuple[float | None, str]:
    """The focal length in pixels of the processed image (None for the default, the longer side), and where it
    came from: --focal-length, else --camera, else the photo's EXIF, else the default.

    `shape` is the input's (H, W) as read; `processed_scale` the resize factor applied to it since.
    """
    if options.focal_length is not None:
        return options.focal_length * processed_scale, "--focal-length"
    if options.camera_preset is not None:
        return options.camera_preset.focal_length_at(shape[0], shape[1]) * processed_scale, "--camera"
    if exif is not None:
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
    deblurrer: Deblurrer, source: Source, options: Options, target: Path, progress: Callable[[str], None]
) -> None:
    assert isinstance(source.location, Path)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    picture = read_image(source.location)
    shape = picture.rgb.shape[:2]
    rgb, factor = _resize(picture.rgb, options)
    if factor != 1.0:
        picture = replace(picture, rgb=rgb, alpha=_resize_alpha(picture.alpha, rgb.shape[:2]))
    timings["read"] = time.perf_counter() - started
    focal_length, focal_length_source = focal_length_for(options, shape, factor, picture.exif_focal_length)
    lens = _lens(options)
    if focal_length is not None and lens is not None:
        rgb = undistort(rgb, lens, focal_length)
        alpha = None if picture.alpha is None else undistort(picture.alpha, lens, focal_length)
        picture = replace(picture, rgb=rgb, alpha=alpha)
    trajectory = options.motion.photo() if options.motion else None
    result = deblurrer.restore(rgb, focal_length, trajectory=trajectory, progress=progress)
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
        _write_sequence(target, frames)
    timings["write"] = time.perf_counter() - started
    if options.timings:
        print(f"{source.name}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()))


def _kernel_overlay(rgb: np.ndarray, result: DeblurResult) -> np.ndarray:
    """The kernel field over the processed image, enlarged first when it is too small to draw kernels on."""
    factor = max(1.0, KERNEL_OVERLAY_MIN_SIDE / max(rgb.shape[:2]))
    preview = _scaled(to_file_pixels(rgb), factor)
    camera = scale_intrinsics(result.intrinsics, factor)
    motion = result.row_motion.trajectory_at if result.row_motion else result.trajectory
    return pictures.kernel_field(preview, motion, camera)


def _write_sequence(target: Path, frames_rgb: np.ndarray) -> None:
    """The sharp frames (`(P, H, W, 3)` uint8 RGB) as PNGs, an MP4 and a looping GIF preview (at most
    `SEQUENCE_GIF_MAX_SIDE`), all at `SEQUENCE_FPS`; one frame at a time is turned to BGR for the files."""
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
    except BaseException:
        writer.abort()
        raise
    writer.close()
    write_gif(target / "sequence.gif", previews, SEQUENCE_FPS)


def _resize_alpha(alpha: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    return None if alpha is None else cv2.resize(alpha, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _video(
    deblurrer: Deblurrer, source: Source, options: Options, target: Path, progress: Callable[[str], None]
) -> None:
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
            rgb, factor = _resize(frame[..., ::-1].astype(np.float32) / np.float32(255), options)
            focal_length = focal_length_for(options, frame.shape[:2], factor)[0]
            if focal_length is not None and (lens := _lens(options)) is not None:
                rgb = undistort(rgb, lens, focal_length)
            trajectory = options.motion.frame(number, reader.timestamp_s) if options.motion else None
            result = deblurrer.restore(rgb, focal_length, trajectory=trajectory)
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
    _write_csv(
        target / "trajectories.csv", ["frame", "pose", "pitch_rad", "yaw_rad", "roll_rad", "focal_length_px"], rows
    )
    if refined:
        _write_csv(target / "refinement.csv", ["frame", "reblur_loss_before", "reblur_loss_after"], refined)
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
    _write_csv(
        target / "trajectory.csv",
        ["pose", "pitch_rad", "yaw_rad", "roll_rad", "focal_length_px", "width_px", "height_px"],
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


def _write_csv(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_bytes(path, text.getvalue().encode())
