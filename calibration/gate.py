"""Samples and the accuracy gate of a reduced-precision variant: its graphs run beside the FP32 ones and judged.

Samples are the evaluation harness's pairs (blurry, sharp, focal length, true trajectory: `runtime.tools.evaluate`) or
plain blurry images (then the reference is the FP32 output itself). The gate: on pairs, the restored PSNR against
the sharp image may drop by at most `max_loss_db` (default 0.5 dB); on images, the reduced-precision output must
stay within `MIN_PSNR_VS_FP32` of the FP32 one. `calibration.int8` and `calibration.fp16` record the result in
the bundle's manifest, and the runtime refuses a variant that failed unless forced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime

from runtime.core.bundle import BundleError, first_line
from runtime.core.camera import intrinsics
from runtime.core.precisions import GATED_ROLES
from runtime.io.media import MediaError, read_image
from runtime.tools import metrics
from runtime.tools.pairs import read_pairs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Images are resized so that their longer side is this (activations depend on content, not on size).
IMAGE_SIDE = 256
DEFAULT_MAX_LOSS_DB = 0.5
#: The gate on images (no sharp reference): PSNR of the reduced-precision restored image against the FP32 one.
MIN_PSNR_VS_FP32 = 40.0


class SampleError(ValueError):
    """Samples that cannot be read; one line naming the folder and the problem."""


def read_images(directory: Path, samples: int, progress: Callable[[str], object]) -> list[np.ndarray]:
    """Up to `samples` images of `directory` (sorted by name) as HxWx3 float32 RGB, longer side `IMAGE_SIDE`.

    Files that cannot be read are reported and skipped; no readable image at all is an error.
    """
    if not directory.is_dir():
        raise SampleError(f"{directory}: not a folder of images")
    files = sorted(path for path in directory.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)[:samples]
    images = []
    for index, path in enumerate(files, 1):
        try:
            rgb = read_image(path).rgb
        except MediaError as error:
            progress(f"images: skipped {error}")
            continue
        scale = IMAGE_SIDE / max(rgb.shape[:2])
        if scale < 1:
            size = (max(32, round(rgb.shape[1] * scale)), max(32, round(rgb.shape[0] * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        images.append(np.ascontiguousarray(rgb, dtype=np.float32))
        progress(f"images: {index}/{len(files)} {_bar(index, len(files))}")
    if not images:
        raise SampleError(f"{directory}: holds no readable image ({', '.join(IMAGE_SUFFIXES)})")
    return images


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = round(width * done / max(total, 1))
    return "[" + "#" * filled + "." * (width - filled) + "]"


@dataclass(frozen=True)
class Sample:
    """One gate sample: a blurry HxWx3 float32 RGB image and its focal length, with the sharp image and the true
    trajectory when known (evaluation pairs)."""

    blurry: np.ndarray
    focal_length: float
    sharp: np.ndarray | None = None
    trajectory: np.ndarray | None = None


@dataclass(frozen=True)
class Gate:
    """What a reduced-precision variant measured against FP32, and whether it passed."""

    passed: bool
    measured_on: str  # "pairs" (against sharp images) or "images" (against the FP32 output)
    samples: int
    max_loss_db: float
    #: Mean PSNR of the INT8 restored image against the FP32 one.
    psnr_vs_fp32: float
    #: Pairs only: mean restored PSNR vs sharp, FP32 and INT8, their difference, and the trajectory errors (px).
    psnr_fp32: float | None = None
    psnr_int8: float | None = None
    loss_db: float | None = None
    trajectory_error_fp32: float | None = None
    trajectory_error_int8: float | None = None

    @property
    def summary(self) -> str:
        if self.measured_on == "pairs":
            return (
                f"restored PSNR vs sharp {self.psnr_fp32:.2f} -> {self.psnr_int8:.2f} dB, loss {self.loss_db:.2f} dB "
                f"(max {self.max_loss_db}) on {self.samples} pairs"
            )
        return f"PSNR vs the FP32 output {self.psnr_vs_fp32:.2f} dB (min {MIN_PSNR_VS_FP32}) on {self.samples} images"


#: What one graph set gives per sample: the restored image (clipped to [0, 1]) and the trajectory.
Outputs = list[tuple[np.ndarray, np.ndarray]]


def image_samples(images: Sequence[np.ndarray]) -> list[Sample]:
    """Blurry images as gate samples, each at the default focal length (the longer side)."""
    return [Sample(rgb, float(max(rgb.shape[:2]))) for rgb in images]


def net_feeds(
    trajectory_session: onnxruntime.InferenceSession, rgb: np.ndarray, focal_length: float, sigma: float
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The trajectory graph's and the restoration graph's feeds for one HxWx3 float32 RGB image, as the runtime
    builds them; the restoration's trajectory is the estimate of the trajectory graph in `trajectory_session`."""
    height, width = rgb.shape[:2]
    batch = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
    camera = intrinsics(height, width, focal_length)[None].astype(np.float32)
    trajectory_feed = {"image": batch, "focal_length": camera[:, 0, 0].copy()}
    (trajectory,) = trajectory_session.run(None, trajectory_feed)
    sigma_feed = np.array([sigma], np.float32)
    return trajectory_feed, {"blurry": batch, "trajectory": trajectory, "intrinsics": camera, "sigma": sigma_feed}


def run_graphs(paths: dict[str, Path], samples: Sequence[Sample], sigma: float) -> Outputs:
    """The trajectory and restoration graphs at `paths` on every sample (onnxruntime CPU)."""
    trajectory_session, restoration_session = (cpu_session(paths[role]) for role in GATED_ROLES)
    outputs = []
    for sample in samples:
        _, feed = net_feeds(trajectory_session, sample.blurry, sample.focal_length, sigma)
        (restored,) = restoration_session.run(None, feed)
        outputs.append((np.clip(restored[0].transpose(1, 2, 0), 0, 1), feed["trajectory"][0]))
    return outputs


def judge(fp32: Outputs, reduced: Outputs, samples: Sequence[Sample], max_loss_db: float) -> Gate:
    """The gate: on pairs, the loss of restored PSNR vs sharp must be at most `max_loss_db`; on images without a
    sharp reference, the PSNR of the reduced-precision output against the FP32 one at least `MIN_PSNR_VS_FP32`."""
    vs_fp32 = float(np.mean([metrics.psnr(low[0], high[0]) for low, high in zip(reduced, fp32, strict=True)]))
    if not all(sample.sharp is not None and sample.trajectory is not None for sample in samples):
        return Gate(vs_fp32 >= MIN_PSNR_VS_FP32, "images", len(samples), max_loss_db, vs_fp32)

    sharp = [sample.sharp for sample in samples if sample.sharp is not None]
    truth = [sample.trajectory for sample in samples if sample.trajectory is not None]
    sizes = [sample.blurry.shape[:2] for sample in samples]
    focal_lengths = [sample.focal_length for sample in samples]

    def psnr(outputs: Outputs) -> float:
        return float(np.mean([metrics.psnr(out[0], image) for out, image in zip(outputs, sharp, strict=True)]))

    def error(outputs: Outputs) -> float:
        errors = [
            metrics.trajectory_error(out[1], true, height, width, focal)
            for out, true, (height, width), focal in zip(outputs, truth, sizes, focal_lengths, strict=True)
        ]
        return float(np.mean(errors))

    psnr_fp32, psnr_int8 = psnr(fp32), psnr(reduced)
    loss = psnr_fp32 - psnr_int8
    return Gate(
        loss <= max_loss_db,
        "pairs",
        len(samples),
        max_loss_db,
        vs_fp32,
        psnr_fp32,
        psnr_int8,
        loss,
        error(fp32),
        error(reduced),
    )


def pair_samples(directory: Path, n_positions: int) -> list[Sample]:
    """The evaluation harness's pairs (`runtime.tools.pairs`) as gate samples."""
    return [
        Sample(read_image(pair.blurry).rgb, pair.focal_length, read_image(pair.sharp).rgb, pair.trajectory)
        for pair in read_pairs(directory, n_positions)
    ]


def cpu_session(path: Path) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session, quiet; BundleError naming the graph when onnxruntime cannot load it."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types per failure
        raise BundleError(f"{path}: onnxruntime cannot load it ({first_line(error)})") from None
