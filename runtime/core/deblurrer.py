"""`Deblurrer`: the object a capture app feeds frames to. One bundle, one backend, torch-free.

    with Deblurrer("runtime/bundles/demo", BackendSettings("ort-cpu")) as deblurrer:
        result = deblurrer(frame_bgr)          # HxWx3 uint8, OpenCV's convention
        cv2.imwrite("restored.png", result.restored)

The Deblurrer holds the bundle, its runners, its input buffer and its settings (`BackendSettings`: where the
graphs run; `RestoreSettings`: how an image is restored; `RefineSettings`: whether and how the trajectory is
refined); the work is the functional steps' (`tiling`, `refine`, `camera`). It builds no TensorRT engine: that is
`runtime.core.backends.tensorrt_build`'s, run before (`python -m runtime.deblur --rebuild`).

Not thread-safe: a Deblurrer reuses its input buffers and, on TensorRT, its device buffers and stream. Use one
per thread (they can share a bundle directory).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from runtime.core import camera as camera_model
from runtime.core.backends import BackendSettings, load_runners
from runtime.core.backends.base import Runner
from runtime.core.bundle import Bundle, load_bundle
from runtime.core.limits import FOCAL_LENGTH_PX, ROTATION_RAD, SIGMA
from runtime.core.motion import ANGLE_NAMES, RowMotion, Trajectory
from runtime.core.pixels import quantize
from runtime.core.refine import GraphFunction, RefineResult, RefineSettings, graph_function, refine_trajectory
from runtime.core.tiling import (
    DEFAULT_N_ITER,
    MIN_MARGIN,
    WARP_TILE_SIDE,
    Tile,
    assemble,
    blur_extent_px,
    max_margin,
    middle_row_fraction,
    refine_tiled,
    restore_tiled,
    tile_margin,
    tiles,
    warp_margin,
    warp_tiled,
)

#: Images whose longer side exceeds this are restored in tiles (memory grows with H x W).
DEFAULT_TILE_SIDE = 1024
#: Smallest tile side: room for a core of half a tile between two margins of `MIN_MARGIN`.
MIN_TILE_SIDE = 4 * MIN_MARGIN
#: The nets' graphs, loaded at the Deblurrer's precision.
NET_ROLES = ("trajectory", "restoration", "sequence")


def refine_roles(precision: str) -> tuple[str, ...]:
    """The graphs a refining Deblurrer loads in FP32 beside the nets (see precisions.FP32_ONLY_ROLES): the refine
    graph, and an FP32 sequence graph for the loss-only evaluations unless the nets' one is already FP32."""
    return ("refine",) if precision == "fp32" else ("refine", "sequence")


def _focal_length(value: float | None, source: str) -> float | None:
    """A focal length in pixels within `FOCAL_LENGTH_PX` (or None), else ValueError naming `source`."""
    if value is None:
        return None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{source}: focal length must be a positive number of pixels, got {value}")
    return FOCAL_LENGTH_PX.check(value, source)


@dataclass(frozen=True)
class RestoreSettings:
    """How a Deblurrer restores an image.

    `focal_length` is in pixels of the frames passed (None: the longer side, as the reference). `sigma` is the
    noise level given to the restoration (None: the bundle's); both must lie within their `runtime.core.limits`.
    Images whose longer side exceeds `tile_side` are restored in overlapping tiles of at most `tile_side` px, and
    the graphs that only warp (sequence, refine) run in tiles of at most 512 px (`WARP_TILE_SIDE`; see
    `runtime.core.tiling`); None never tiles.
    `estimation_side` runs the trajectory net on a copy of each image shrunk (area-averaged) to at most that many
    px on its longer side, with the focal length scaled to match: rotations do not depend on resolution, and a
    net predicts best at blur sizes in pixels like those it was trained on (`docs/tiling-and-memory.md`); None runs it
    at full resolution, as the reference does. It must be at least the bundle's smallest input, which the
    Deblurrer checks.
    """

    focal_length: float | None = None
    sigma: float | None = None
    tile_side: int | None = DEFAULT_TILE_SIDE
    estimation_side: int | None = None

    def __post_init__(self) -> None:
        _focal_length(self.focal_length, "RestoreSettings.focal_length")
        if self.sigma is not None:
            if not (math.isfinite(self.sigma) and self.sigma >= 0):
                raise ValueError(
                    f"RestoreSettings.sigma: sigma (the noise level) must be a finite number >= 0, got {self.sigma}"
                )
            SIGMA.check(self.sigma, "RestoreSettings.sigma")
        if self.tile_side is not None and not self.tile_side >= MIN_TILE_SIDE:
            raise ValueError(
                f"tile side must be at least {MIN_TILE_SIDE} px (or None: never tile), got {self.tile_side}"
            )


def _eight_bit_frames(run: GraphFunction) -> GraphFunction:
    """The sequence graph with its frames rounded to uint8 (`pixels.quantize`) as they come out."""

    def converted(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        outputs = dict(run(inputs))
        if "frames" in outputs:
            outputs["frames"] = quantize(np.asarray(outputs["frames"]))
        return outputs

    return converted


def _silent(_: str) -> None:
    """A progress callback that says nothing."""


@dataclass(frozen=True)
class DeblurResult:
    """What one frame gives: the restored image (in the input's convention), the camera motion and the timings."""

    restored: np.ndarray
    #: `(P, 3)` float32 radians (pitch, yaw, roll), in time order up to reversal.
    trajectory: np.ndarray
    #: `(3, 3)` intrinsics used (focal length and principal point in pixels of this frame).
    intrinsics: np.ndarray
    #: Seconds per stage: trajectory (unless one was given), restoration.
    timings: dict[str, float] = field(default_factory=dict)
    #: Tiles the restoration ran in (1: the whole image at once).
    tiles: int = 1
    #: How refinement went (loss before/after, steps), when the Deblurrer refines; `trajectory` is then the
    #: refined one, and `restored` was restored with it only if the settings ask for the re-run.
    refinement: RefineResult | None = None
    #: The motion of every row, when it was given so (a rolling shutter); `trajectory` is then the middle row's.
    row_motion: RowMotion | None = None


class Deblurrer:
    """Deblur frames with a bundle on one backend (`auto`: the fastest available, said once through `log`).

    `backend` says where the graphs run, `restore` how each image is restored, `refine` (None: not at all) how
    each trajectory is then refined on the reblur error of the restored image (`runtime.core.refine`; the bundle
    needs its `refine` graph). A precision whose variant failed its accuracy gate is refused unless
    `backend.force_precision`. `log` is told the backend `auto` chose and any tiling warning.
    """

    def __init__(
        self,
        bundle: str | Path | Bundle,
        backend: BackendSettings = BackendSettings(),
        restore: RestoreSettings = RestoreSettings(),
        refine: RefineSettings | None = None,
        log: Callable[[str], object] = print,
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.backend_settings = backend
        self.restore_settings = restore
        self.refine = refine
        self.log = log
        self._sigma = self.bundle.default_sigma if restore.sigma is None else float(restore.sigma)
        #: Tile side of the graphs that only warp (None: never tiled).
        self._warp_tile_side = None if restore.tile_side is None else min(restore.tile_side, WARP_TILE_SIDE)
        self._min_side = int(self.bundle.manifest.get("min_side", 32))
        if restore.estimation_side is not None and not restore.estimation_side >= self._min_side:
            raise ValueError(
                f"estimation side must be at least {self._min_side} px, the bundle's smallest input (or None), "
                f"got {restore.estimation_side}"
            )
        architecture = self.bundle.manifest.get("architecture", {}).get("restoration", {})
        self._n_iter = int(architecture.get("n_iter", DEFAULT_N_ITER))
        failure = self.bundle.gate_failure(backend.precision)
        if failure is not None and not backend.force_precision:
            raise ValueError(f"{failure}; pass --force-precision (force_precision=True) to run them anyway")
        if refine is not None and "refine" not in self.bundle.manifest["graphs"]:
            raise ValueError(
                f"{self.bundle.path}: the bundle has no refine graph; add it with "
                f"python -m export.refine {self.bundle.path}"
            )
        #: The backend the graphs run on (the one `auto` chose).
        self.backend, self._runners = load_runners(self.bundle, NET_ROLES, backend, log)
        #: The refinement's graphs (refine, sequence), in FP32 whatever the nets' precision.
        self._refine_runners: dict[str, Runner] = {}
        if refine is not None:
            # On the backend chosen for the nets, in FP32 whatever their precision.
            fp32 = replace(backend, name=self.backend, precision="fp32")
            try:
                _, fp32_runners = load_runners(self.bundle, refine_roles(backend.precision), fp32, log)
            except BaseException:
                self.close()
                raise
            self._refine_runners = {"sequence": self._runners["sequence"], **fp32_runners}
        self._batch: np.ndarray | None = None
        self._margin_warned = False

    def __call__(self, frame: np.ndarray, trajectory: Trajectory | None = None) -> DeblurResult:
        """Deblur one HxWx3 uint8 BGR frame; the restored frame comes back the same way (rounded, clipped).

        The frame goes to the nets as RGB `frame / 255` in float32, through a buffer reused while the size stays.
        A known `trajectory` (e.g. `runtime.core.motion.exposure_motion` of the frame's exposure in a gyroscope log)
        skips the trajectory net, as in `restore`.
        """
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR frame, got {_describe(frame)}")
        self._check_size(frame.shape[0], frame.shape[1])
        batch = self._input_batch(frame.shape[0], frame.shape[1])
        np.divide(frame.transpose(2, 0, 1)[::-1], np.float32(255), out=batch[0])
        restored, result = self._restore(batch, None, trajectory)
        pixels = np.clip(restored[0, ::-1].transpose(1, 2, 0) * np.float32(255) + np.float32(0.5), 0, 255)
        return replace(result, restored=pixels.astype(np.uint8, order="C"))

    def restore(
        self,
        image: np.ndarray,
        focal_length: float | None = None,
        trajectory: Trajectory | None = None,
        refine: bool = True,
        progress: Callable[[str], object] | None = None,
    ) -> DeblurResult:
        """Deblur an HxWx3 float32 RGB image in [0, 1]; the restored image is float32 RGB, not clipped.

        `focal_length` (px) overrides the Deblurrer's for this image. A known `trajectory` `(P, 3)` radians (from
        a gyroscope, or an earlier estimate) skips the trajectory net (and is refined when the Deblurrer refines);
        a `RowMotion` (a rolling shutter: one trajectory per row) is restored in horizontal bands, each with its
        middle row's trajectory, and is not refined.
        `refine=False` skips this Deblurrer's refinement for this image; `refine_result` can add it afterwards,
        so a caller that wants both results restores only once. `progress`, when given, is told each tile of a
        tiled restoration as it starts (`restoring: tile 3/12`): a large image takes minutes on a CPU.
        """
        batch = self._rgb_batch(image)
        restored, result = self._restore(batch, focal_length, trajectory, refine, progress or _silent)
        return replace(result, restored=np.ascontiguousarray(restored[0].transpose(1, 2, 0)))

    def estimate_trajectory(
        self, image: np.ndarray, focal_length: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The trajectory net's estimate `(P, 3)` radians for an HxWx3 float32 RGB image, and the intrinsics
        `(3, 3)` it was made with, without restoring (nor refining) the image."""
        batch = self._rgb_batch(image)
        camera = self._camera(batch, focal_length)
        return self._estimate(batch, camera)[0], camera

    def refine_result(self, image: np.ndarray, result: DeblurResult) -> DeblurResult:
        """Refine the trajectory of an unrefined `result` of `restore(image, refine=False)`, with this Deblurrer's
        refine settings (and re-run the restoration if they ask for it)."""
        if self.refine is None:
            raise ValueError("this Deblurrer does not refine: create it with refine=RefineSettings(...)")
        if result.refinement is not None:
            raise ValueError("the result is already refined")
        if result.row_motion is not None:
            raise ValueError("a result restored with one trajectory per row (a rolling shutter) is not refined")
        batch = self._rgb_batch(image)
        restored = np.ascontiguousarray(result.restored.transpose(2, 0, 1)[None])
        if restored.shape != batch.shape:
            raise ValueError(
                f"the result is {result.restored.shape[1]}x{result.restored.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]}: refine a result with the image it was restored from"
            )
        timings = {name: value for name, value in result.timings.items() if name in ("trajectory", "restoration")}
        poses = self._poses(result.trajectory)
        restored, refined = self._refined(batch, restored, poses, result.intrinsics, timings, result.tiles)
        return replace(refined, restored=np.ascontiguousarray(restored[0].transpose(1, 2, 0)))

    def sequence(
        self, sharp: np.ndarray, trajectory: Trajectory, camera: np.ndarray, eight_bit: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sharp frames `(P, H, W, 3)` of an HxWx3 float32 RGB image under a trajectory (or one per row), and
        their mean. `eight_bit` gives the frames as uint8, rounded tile by tile as they are made: a quarter of
        the memory of the float frames (P times the image's), for frames that are only to be written."""
        keep = ("frames", "reblurred")
        result = self._run_sequence(keep, sharp, trajectory, camera, eight_bit)
        return result["frames"][0].transpose(0, 2, 3, 1), result["reblurred"][0].transpose(1, 2, 0)

    def reblur(self, sharp: np.ndarray, trajectory: Trajectory, camera: np.ndarray) -> np.ndarray:
        """An HxWx3 float32 RGB image blurred by a trajectory or one per row (the mean of its sharp frames, which
        are not kept)."""
        return self._run_sequence(("reblurred",), sharp, trajectory, camera)["reblurred"][0].transpose(1, 2, 0)

    def close(self) -> None:
        for runner in (*self._runners.values(), *self._refine_runners.values()):  # closing twice is harmless
            runner.close()

    def __enter__(self) -> Deblurrer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rgb_batch(self, image: np.ndarray) -> np.ndarray:
        """An HxWx3 float32 RGB image as the graphs' `(1, 3, H, W)` batch, checked."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.float32:
            raise ValueError(f"expected an HxWx3 float32 RGB image in [0, 1], got {_describe(image)}")
        self._check_size(image.shape[0], image.shape[1])
        return np.ascontiguousarray(image.transpose(2, 0, 1)[None])

    def _restore(
        self,
        batch: np.ndarray,
        focal_length: float | None,
        trajectory: Trajectory | None,
        refine: bool = True,
        progress: Callable[[str], object] = _silent,
    ) -> tuple[np.ndarray, DeblurResult]:
        """Restore a `(1, 3, H, W)` float32 batch: the restored batch, and the result without its image."""
        camera = self._camera(batch, focal_length)
        timings: dict[str, float] = {}
        if isinstance(trajectory, RowMotion):
            started = time.perf_counter()
            restored, tiles_run = self._restore_rows(batch, trajectory, camera, progress)
            timings["restoration"] = time.perf_counter() - started
            middle = self._poses(trajectory.trajectory_at(0.5))[0]
            return restored, DeblurResult(restored, middle, camera, timings, tiles_run, row_motion=trajectory)
        if trajectory is None:
            started = time.perf_counter()
            poses = self._estimate(batch, camera)
            timings["trajectory"] = time.perf_counter() - started
        else:
            poses = self._poses(trajectory)

        started = time.perf_counter()
        restored, tiles = self._restore_image(batch, poses, camera, progress, "restoring")
        timings["restoration"] = time.perf_counter() - started
        if self.refine is not None and refine:
            return self._refined(batch, restored, poses, camera, timings, tiles, progress)
        return restored, DeblurResult(restored, poses[0], camera, timings, tiles)

    def _run_sequence(
        self,
        keep: tuple[str, ...],
        sharp: np.ndarray,
        trajectory: Trajectory,
        camera: np.ndarray,
        eight_bit: bool = False,
    ) -> dict[str, np.ndarray]:
        """The sequence graph's outputs in `keep` (with `eight_bit`, the frames rounded tile by tile)."""
        if isinstance(trajectory, RowMotion):
            return self._run_sequence_rows(keep, sharp, trajectory, camera, eight_bit)
        inputs = {
            "sharp": self._rgb_batch(sharp),
            "trajectory": self._poses(trajectory),
            "intrinsics": np.asarray(camera, np.float32).reshape(1, 3, 3),
        }
        return dict(self._sequence_function(self._runners["sequence"], keep, eight_bit)(inputs))

    def _sequence_function(self, runner: Runner, keep: tuple[str, ...], eight_bit: bool = False) -> GraphFunction:
        """The sequence graph as a function assembling the outputs in `keep`, in tiles on large images (with
        `eight_bit`, the frames rounded to uint8 as each tile comes out)."""
        run = _eight_bit_frames(graph_function(runner)) if eight_bit else graph_function(runner)
        return run if self._warp_tile_side is None else warp_tiled(run, self._warp_tile_side, keep)

    def _refine_function(self, runner: Runner) -> GraphFunction:
        """The refine graph as a function, in tiles on large images."""
        run = graph_function(runner)
        return run if self._warp_tile_side is None else refine_tiled(run, self._warp_tile_side)

    def _camera(self, batch: np.ndarray, focal_length: float | None) -> np.ndarray:
        """The intrinsics of a `(1, 3, H, W)` batch: this image's focal length, else the Deblurrer's."""
        height, width = batch.shape[-2:]
        focal = _focal_length(focal_length, "the focal_length given for this image")
        focal = focal if focal is not None else self.restore_settings.focal_length
        return camera_model.intrinsics(height, width, focal)

    def _estimate(self, batch: np.ndarray, camera: np.ndarray) -> np.ndarray:
        """The trajectory net's poses `(1, P, 3)` for a `(1, 3, H, W)` batch (shrunk to `estimation_side`)."""
        height, width = batch.shape[-2:]
        focal_length = float(camera[0, 0])
        size = self._estimation_size(height, width)
        if size != (width, height):
            shrunk = cv2.resize(batch[0].transpose(1, 2, 0), size, interpolation=cv2.INTER_AREA)
            batch = np.ascontiguousarray(shrunk.transpose(2, 0, 1)[None])
            focal_length *= size[0] / width
        focal_input = np.array([focal_length], np.float32)
        return self._run("trajectory", image=batch, focal_length=focal_input)["trajectory"]

    def _estimation_size(self, height: int, width: int) -> tuple[int, int]:
        """`(width, height)` the trajectory net sees: at most `estimation_side` on the longer side, never less than
        the bundle's smallest input on the shorter, never enlarged."""
        side = self.restore_settings.estimation_side
        if side is None:
            return width, height
        factor = max(side / max(height, width), self._min_side / min(height, width))
        if factor >= 1:
            return width, height
        return round(width * factor), round(height * factor)

    def _refined(
        self,
        batch: np.ndarray,
        restored: np.ndarray,
        poses: np.ndarray,
        camera: np.ndarray,
        timings: dict[str, float],
        tiles: int,
        progress: Callable[[str], object] = _silent,
    ) -> tuple[np.ndarray, DeblurResult]:
        """Refine `poses (1, P, 3)` against the restored batch, re-run the restoration if the settings say so."""
        assert self.refine is not None
        timings = dict(timings)
        started = time.perf_counter()
        refinement = self._refine(batch, restored, poses[0], camera)
        poses = refinement.trajectory[None]
        timings["refine"] = time.perf_counter() - started
        if self.refine.rerun:
            started = time.perf_counter()
            restored, tiles = self._restore_image(batch, poses, camera, progress, "restoring again")
            timings["restoration_rerun"] = time.perf_counter() - started
        return restored, DeblurResult(restored, poses[0], camera, timings, tiles, refinement)

    def _restore_rows(
        self, batch: np.ndarray, motion: RowMotion, camera: np.ndarray, progress: Callable[[str], object]
    ) -> tuple[np.ndarray, int]:
        """Restore in the motion's horizontal bands (and in tiles across a wide image), each with its middle row's
        trajectory."""
        height, width = batch.shape[-2:]
        tile = self.restore_settings.tile_side or max(height, width)

        def trajectory_of(part: Tile) -> np.ndarray:
            return self._poses(motion.trajectory_at(middle_row_fraction(part, height)))

        extent = _widest_blur(motion, camera, height, width)
        return self._restore_tiled(batch, trajectory_of, camera, tile, extent, progress, "restoring", motion.bands)

    def _run_sequence_rows(
        self,
        keep: tuple[str, ...],
        sharp: np.ndarray,
        motion: RowMotion,
        camera: np.ndarray,
        eight_bit: bool = False,
    ) -> dict[str, np.ndarray]:
        """The sequence graph's outputs in `keep` band by band, each band warped with its middle row's trajectory
        (margins of one blur extent, so each band's core is what its trajectory makes of it)."""
        height, width = sharp.shape[:2]
        margin = warp_margin(_widest_blur(motion, camera, height, width))

        def band_outputs(band: Tile) -> dict[str, np.ndarray]:
            poses = motion.trajectory_at(middle_row_fraction(band, height))
            window = np.ascontiguousarray(sharp[band.y0 : band.y1])
            return self._run_sequence(keep, window, poses, camera_model.tile_intrinsics(camera, 0, band.y0), eight_bit)

        bands = tiles(height, width, max(height, width), margin, motion.bands)
        return assemble(bands, band_outputs, keep, height, width)

    def _restore_image(
        self,
        batch: np.ndarray,
        poses: np.ndarray,
        camera: np.ndarray,
        progress: Callable[[str], object] = _silent,
        stage: str = "restoring",
    ) -> tuple[np.ndarray, int]:
        """The restored batch and the number of tiles it took (tiled when larger than `tile_side`, each tile told
        to `progress` as `STAGE: tile K/N`)."""
        height, width = batch.shape[-2:]
        tile_side = self.restore_settings.tile_side
        if tile_side is not None and max(height, width) > tile_side:
            extent = blur_extent_px(poses[0], camera, height, width)
            return self._restore_tiled(batch, lambda _: poses, camera, tile_side, extent, progress, stage)
        return self._restore_batch(batch, poses, camera), 1

    def _restore_tiled(
        self,
        batch: np.ndarray,
        trajectory_of: Callable[[Tile], np.ndarray],
        camera: np.ndarray,
        tile: int,
        extent_px: float,
        progress: Callable[[str], object],
        stage: str,
        bands: int = 1,
    ) -> tuple[np.ndarray, int]:
        """Restore in tiles of at most `tile` px (and `bands` of rows) with margins for a blur of `extent_px`, each
        tile told to `progress` as `STAGE: tile K/N`."""

        def tell(number: int, total: int) -> None:
            progress(f"{stage}: tile {number}/{total}")

        margin = self._margin(extent_px, tile)
        return restore_tiled(self._restore_batch, batch, trajectory_of, camera, tile, margin, tell, bands)

    def _refine(
        self, blurry: np.ndarray, restored: np.ndarray, trajectory: np.ndarray, camera: np.ndarray
    ) -> RefineResult:
        """Refine the trajectory against the reblur error of the restored image (clipped to [0, 1])."""
        assert self.refine is not None
        run_refine = self._refine_function(self._refine_runners["refine"])
        run_sequence = self._sequence_function(self._refine_runners["sequence"], ("reblurred",))
        latent = np.clip(restored, 0, 1)
        return refine_trajectory(
            run_refine,
            blurry,
            latent,
            trajectory,
            camera,
            self.refine,
            n_positions=self.bundle.n_positions,
            run_sequence=run_sequence,
        )

    def _margin(self, extent_px: float, tile_side: int) -> int:
        """The tile margin for this blur, capped to what the tile side allows (said once when it is)."""
        margin, cap = tile_margin(extent_px, self._n_iter), max_margin(tile_side)
        if margin > cap:
            if not self._margin_warned:
                self.log(
                    f"warning: a blur of {extent_px:.0f} px needs tile margins of {margin} px but tiles of "
                    f"{tile_side} px allow {cap}: seams may show; raise the tile side to {4 * margin}"
                )
                self._margin_warned = True
            margin = cap
        return margin

    def _restore_batch(self, blurry: np.ndarray, trajectory: np.ndarray, camera: np.ndarray) -> np.ndarray:
        return self._run(
            "restoration",
            blurry=blurry,
            trajectory=trajectory,
            intrinsics=np.asarray(camera, np.float32).reshape(1, 3, 3),
            sigma=np.array([self._sigma], np.float32),
        )["restored"]

    def _run(self, role: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        runner: Runner = self._runners[role]
        runner.set_shapes({name: value.shape for name, value in inputs.items()})
        return runner.run(inputs)

    def _poses(self, trajectory: np.ndarray) -> np.ndarray:
        """A `(P, 3)` trajectory as the graphs' `(1, P, 3)` float32 input, checked: finite, within `ROTATION_RAD`."""
        poses = np.asarray(trajectory, dtype=np.float64)
        expected = (self.bundle.n_positions, 3)
        if poses.shape != expected or not np.isfinite(poses).all():
            raise ValueError(f"a trajectory must be {expected[0]}x3 finite radians, got {_describe(trajectory)}")
        ROTATION_RAD.check_all(poses, lambda index: f"the trajectory given, pose {index[0]} {ANGLE_NAMES[index[1]]}")
        return np.ascontiguousarray(poses.astype(np.float32)[None])

    def _check_size(self, height: int, width: int) -> None:
        if min(height, width) < self._min_side:
            raise ValueError(f"image is {width}x{height}; the bundle needs at least {self._min_side} px on each side")

    def _input_batch(self, height: int, width: int) -> np.ndarray:
        """A `(1, 3, H, W)` float32 input buffer, reused while the frame size stays the same."""
        if self._batch is None or self._batch.shape[-2:] != (height, width):
            self._batch = np.empty((1, 3, height, width), np.float32)
        return self._batch


def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    """`--sigma`, `--tile-side` and `--estimation-side`: the `RestoreSettings` of the commands that restore images
    (`restore_settings` reads them back)."""
    parser.add_argument("--sigma", type=float, help="noise level for the restoration (default: the bundle's)")
    parser.add_argument(
        "--tile-side",
        type=int,
        default=DEFAULT_TILE_SIDE,
        help=f"restore images with a longer side above this in tiles (default {DEFAULT_TILE_SIDE}; 0: never tile)",
    )
    add_estimation_argument(parser)


def restore_settings(args: argparse.Namespace) -> RestoreSettings:
    """The `RestoreSettings` of the options `add_restore_arguments` added."""
    return RestoreSettings(sigma=args.sigma, tile_side=args.tile_side or None, estimation_side=args.estimation_side)


def add_estimation_argument(parser: argparse.ArgumentParser) -> None:
    """`--estimation-side PX`: `RestoreSettings.estimation_side`, for the commands that make a Deblurrer."""
    parser.add_argument(
        "--estimation-side",
        type=int,
        metavar="PX",
        help="run the trajectory net on a copy of each image shrunk to at most PX on its longer side "
        "(default: full resolution)",
    )


def _widest_blur(motion: RowMotion, camera: np.ndarray, height: int, width: int) -> float:
    """The largest blur extent (px) of the rows' trajectories, sampled at the band boundaries."""
    fractions = np.linspace(0.0, 1.0, motion.bands + 1)
    return max(blur_extent_px(motion.trajectory_at(float(f)), camera, height, width) for f in fractions)


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
