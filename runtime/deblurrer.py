"""`Deblurrer`: the object a capture app feeds frames to. One bundle, one backend, torch-free.

    with Deblurrer("bundles/demo") as deblurrer:
        result = deblurrer(frame_bgr)          # HxWx3 uint8, OpenCV's convention
        cv2.imwrite("restored.png", result.restored)

Not thread-safe: a Deblurrer reuses its input buffers and, on TensorRT, its device buffers and stream. Use one
per thread (they can share a bundle directory).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime import camera as camera_model
from runtime.backends import load_runners
from runtime.backends.base import Runner
from runtime.bundle import Bundle, load_bundle
from runtime.profiles import BuildProfile
from runtime.tiling import blur_extent_px, restore_tiled, tile_margin

#: Images whose longer side exceeds this are restored in tiles (memory grows with H x W).
DEFAULT_TILE_SIDE = 1024


@dataclass(frozen=True)
class DeblurResult:
    """What one frame gives: the restored image (in the input's convention), the camera motion and the timings."""

    restored: np.ndarray
    #: `(P, 3)` float32 radians (pitch, yaw, roll), in time order up to reversal.
    trajectory: np.ndarray
    #: `(3, 3)` intrinsics used (focal length and principal point in pixels of this frame).
    intrinsics: np.ndarray
    #: Seconds per stage: trajectory, restoration (and tiles when tiled).
    timings: dict[str, float] = field(default_factory=dict)
    tiles: int = 1


class Deblurrer:
    """Deblur frames with a bundle on one backend (`auto`: the fastest available, printed once).

    `focal_length` is in pixels of the frames you pass (default: the longer side, as the reference). `sigma` is
    the noise level given to the restoration (default: the bundle's). Frames whose longer side exceeds
    `tile_side` are restored in overlapping tiles; None never tiles.
    """

    def __init__(
        self,
        bundle: str | Path | Bundle,
        backend: str = "auto",
        focal_length: float | None = None,
        precision: str = "fp32",
        sigma: float | None = None,
        tile_side: int | None = DEFAULT_TILE_SIDE,
        profile: BuildProfile | None = None,
        log: Callable[[str], object] = print,
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        if focal_length is not None and not focal_length > 0:
            raise ValueError(f"focal length must be a positive number of pixels, got {focal_length}")
        self.focal_length = focal_length
        self.sigma = self.bundle.default_sigma if sigma is None else sigma
        self.tile_side = tile_side
        self.backend, self._runners = load_runners(
            self.bundle, ("trajectory", "restoration", "sequence"), backend, precision, profile, log
        )
        self._input: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> DeblurResult:
        """Deblur one HxWx3 uint8 BGR frame; the restored frame comes back the same way."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR frame, got {frame.dtype} {frame.shape}")
        image = self._input_buffer(frame.shape[0], frame.shape[1])
        np.multiply(frame[..., ::-1], np.float32(1 / 255), out=image)
        result = self.restore(image)
        restored = np.clip(result.restored[..., ::-1] * 255 + 0.5, 0, 255).astype(np.uint8)
        return DeblurResult(restored, result.trajectory, result.intrinsics, result.timings, result.tiles)

    def restore(self, image: np.ndarray, focal_length: float | None = None) -> DeblurResult:
        """Deblur an HxWx3 float32 RGB image in [0, 1]; the restored image is float32 RGB, not clipped."""
        height, width = image.shape[:2]
        minimum = int(self.bundle.manifest["min_side"])
        if min(height, width) < minimum:
            raise ValueError(f"image is {width}x{height}; the bundle needs at least {minimum} px on each side")
        camera = camera_model.intrinsics(height, width, focal_length or self.focal_length)
        batch = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
        timings: dict[str, float] = {}

        started = time.perf_counter()
        trajectory = self._run("trajectory", image=batch, focal_length=np.array([camera[0, 0]], np.float32))
        timings["trajectory"] = time.perf_counter() - started

        started = time.perf_counter()
        tiles = 1
        if self.tile_side is not None and max(height, width) > self.tile_side:
            margin = tile_margin(blur_extent_px(trajectory[0], camera, height, width))
            restored, tiles = restore_tiled(self._restore_batch, batch, trajectory, camera, self.tile_side, margin)
        else:
            restored = self._restore_batch(batch, trajectory, camera)
        timings["restoration"] = time.perf_counter() - started
        return DeblurResult(restored[0].transpose(1, 2, 0), trajectory[0], camera, timings, tiles)

    def sequence(self, sharp: np.ndarray, trajectory: np.ndarray, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sharp frames `(P, H, W, 3)` of an HxWx3 float32 RGB image under a trajectory, and their mean."""
        batch = np.ascontiguousarray(sharp.transpose(2, 0, 1)[None], dtype=np.float32)
        outputs = self._runners["sequence"]
        shapes = {"sharp": batch.shape, "trajectory": (1, *trajectory.shape), "intrinsics": (1, 3, 3)}
        outputs.set_shapes(shapes)
        result = outputs.run(
            {
                "sharp": batch,
                "trajectory": trajectory[None].astype(np.float32),
                "intrinsics": camera[None].astype(np.float32),
            }
        )
        return result["frames"][0].transpose(0, 2, 3, 1), result["reblurred"][0].transpose(1, 2, 0)

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()

    def __enter__(self) -> Deblurrer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _restore_batch(self, blurry: np.ndarray, trajectory: np.ndarray, camera: np.ndarray) -> np.ndarray:
        return self._run(
            "restoration",
            blurry=blurry,
            trajectory=trajectory,
            intrinsics=camera[None].astype(np.float32),
            sigma=np.array([self.sigma], np.float32),
        )

    def _run(self, role: str, **inputs: np.ndarray) -> np.ndarray:
        runner: Runner = self._runners[role]
        runner.set_shapes({name: value.shape for name, value in inputs.items()})
        return next(iter(runner.run(inputs).values()))

    def _input_buffer(self, height: int, width: int) -> np.ndarray:
        """An HxWx3 float32 buffer reused while the frame size stays the same."""
        if self._input is None or self._input.shape[:2] != (height, width):
            self._input = np.empty((height, width, 3), np.float32)
        return self._input
