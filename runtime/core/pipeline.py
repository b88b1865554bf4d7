"""The deblurring pipeline's steps as functions over graph runners: estimate, restore (whole, tiled, in rolling-shutter
bands), sequence/reblur, refine.

Each step is a plain function of its inputs (arrays, the bundle's runners or graph functions, the bundle, the
settings), so it runs and is tested without a `Deblurrer`, the thin object that holds them between frames
(`runtime.core.deblurrer`). The pieces below the steps stay where they are: tile geometry and tiled runs in
`tiling`, the refinement loop in `refine`, the pinhole camera in `camera`.

Conventions: an image travels as the graphs' `(1, 3, H, W)` float32 RGB batch in [0, 1], a trajectory as their
`(1, P, 3)` float32 poses in radians, a camera as `(3, 3)` intrinsics in pixels of the image.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from runtime.core import camera as camera_model
from runtime.core.backends.base import Runner
from runtime.core.bundle import Bundle
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
#: The smallest image side a bundle takes when its manifest does not say.
DEFAULT_MIN_SIDE = 32

#: Told each step of a long run as a line (`restoring: tile 3/12`).
Progress = Callable[[str], object]
#: `restore(blurry (1, 3, H, W), trajectory (1, P, 3), camera (3, 3)) -> restored (1, 3, H, W)`: the restoration
#: graph at one noise level, as `tiling.restore_tiled` runs it on each tile.
RestoreFunction = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


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
    Deblurrer checks (`check_restore_settings`).
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


def silent(_: str) -> None:
    """A progress callback that says nothing."""


def say_once(log: Callable[[str], object]) -> Callable[[str], None]:
    """`log` for the first message only: a warning a Deblurrer says once, not once per image or tile."""
    said = False

    def say(message: str) -> None:
        nonlocal said
        if not said:
            log(message)
            said = True

    return say


# --- what the steps read from a bundle and its settings ------------------------------------------------------


def min_side(bundle: Bundle) -> int:
    """The smallest image side (px) the bundle's graphs take."""
    return int(bundle.manifest.get("min_side", DEFAULT_MIN_SIDE))


def n_iter(bundle: Bundle) -> int:
    """The restoration's ADMM iterations, which set its tile margins (the reference's when the bundle does not say)."""
    architecture = bundle.manifest.get("architecture", {}).get("restoration", {})
    return int(architecture.get("n_iter", DEFAULT_N_ITER))


def sigma(bundle: Bundle, settings: RestoreSettings) -> float:
    """The noise level given to the restoration: the settings', else the bundle's."""
    return bundle.default_sigma if settings.sigma is None else float(settings.sigma)


def check_restore_settings(settings: RestoreSettings, bundle: Bundle) -> None:
    """ValueError when the settings ask what the bundle cannot do: an estimation side below its smallest input."""
    smallest = min_side(bundle)
    if settings.estimation_side is not None and not settings.estimation_side >= smallest:
        raise ValueError(
            f"estimation side must be at least {smallest} px, the bundle's smallest input (or None), "
            f"got {settings.estimation_side}"
        )


def warp_tile_side(tile_side: int | None) -> int | None:
    """The tile side of the graphs that only warp (sequence, refine) under a restoration's `tile_side` (None: never
    tiled)."""
    return None if tile_side is None else min(tile_side, WARP_TILE_SIDE)


# --- inputs, checked, and outputs ----------------------------------------------------------------------------


def describe(value: object) -> str:
    """What a value passed as an image or trajectory is, for an error message."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def check_size(height: int, width: int, min_side_px: int) -> None:
    """ValueError for an image smaller than the bundle's graphs take."""
    if min(height, width) < min_side_px:
        raise ValueError(f"image is {width}x{height}; the bundle needs at least {min_side_px} px on each side")


def frame_batch(frame: np.ndarray, min_side_px: int, buffer: np.ndarray | None = None) -> np.ndarray:
    """An HxWx3 uint8 BGR frame as a batch of RGB `frame / 255` in float32, checked; written into `buffer` when it
    has the frame's size (a capture app's frames keep theirs), else into a new one."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 BGR frame, got {describe(frame)}")
    height, width = frame.shape[:2]
    check_size(height, width, min_side_px)
    if buffer is None or buffer.shape[-2:] != (height, width):
        buffer = np.empty((1, 3, height, width), np.float32)
    np.divide(frame.transpose(2, 0, 1)[::-1], np.float32(255), out=buffer[0])
    return buffer


def frame_pixels(batch: np.ndarray) -> np.ndarray:
    """A restored batch as an HxWx3 uint8 BGR frame (rounded, clipped), C-contiguous for OpenCV."""
    pixels = np.clip(batch[0, ::-1].transpose(1, 2, 0) * np.float32(255) + np.float32(0.5), 0, 255)
    return pixels.astype(np.uint8, order="C")


def rgb_batch(image: np.ndarray, min_side_px: int) -> np.ndarray:
    """An HxWx3 float32 RGB image as a batch, checked."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.float32:
        raise ValueError(f"expected an HxWx3 float32 RGB image in [0, 1], got {describe(image)}")
    check_size(image.shape[0], image.shape[1], min_side_px)
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None])


def rgb_image(batch: np.ndarray) -> np.ndarray:
    """A batch as an HxWx3 float32 RGB image (not clipped)."""
    return np.ascontiguousarray(batch[0].transpose(1, 2, 0))


def checked_poses(trajectory: np.ndarray, n_positions: int) -> np.ndarray:
    """A `(P, 3)` trajectory as the graphs' `(1, P, 3)` float32 input, checked: finite, within `ROTATION_RAD`."""
    poses = np.asarray(trajectory, dtype=np.float64)
    expected = (n_positions, 3)
    if poses.shape != expected or not np.isfinite(poses).all():
        raise ValueError(f"a trajectory must be {expected[0]}x3 finite radians, got {describe(trajectory)}")
    ROTATION_RAD.check_all(poses, lambda index: f"the trajectory given, pose {index[0]} {ANGLE_NAMES[index[1]]}")
    return np.ascontiguousarray(poses.astype(np.float32)[None])


def image_camera(batch: np.ndarray, focal_length: float | None, settings: RestoreSettings) -> np.ndarray:
    """The intrinsics of a batch: this image's focal length (checked), else the settings'."""
    height, width = batch.shape[-2:]
    focal = _focal_length(focal_length, "the focal_length given for this image")
    focal = focal if focal is not None else settings.focal_length
    return camera_model.intrinsics(height, width, focal)


def _run(runner: Runner, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    """One run of a graph, its input shapes set first."""
    runner.set_shapes({name: value.shape for name, value in inputs.items()})
    return runner.run(inputs)


# --- estimate ------------------------------------------------------------------------------------------------


def estimation_size(height: int, width: int, estimation_side: int | None, min_side_px: int) -> tuple[int, int]:
    """`(width, height)` the trajectory net sees: at most `estimation_side` on the longer side, never less than
    `min_side_px` (the bundle's smallest input) on the shorter, never enlarged."""
    if estimation_side is None:
        return width, height
    factor = max(estimation_side / max(height, width), min_side_px / min(height, width))
    if factor >= 1:
        return width, height
    return round(width * factor), round(height * factor)


def estimate(
    runner: Runner, batch: np.ndarray, camera: np.ndarray, estimation_side: int | None, min_side_px: int
) -> np.ndarray:
    """The trajectory net's poses `(1, P, 3)` for a batch, shrunk (area-averaged, the focal length with it) to the
    `estimation_size`."""
    height, width = batch.shape[-2:]
    focal_length = float(camera[0, 0])
    size = estimation_size(height, width, estimation_side, min_side_px)
    if size != (width, height):
        shrunk = cv2.resize(batch[0].transpose(1, 2, 0), size, interpolation=cv2.INTER_AREA)
        batch = np.ascontiguousarray(shrunk.transpose(2, 0, 1)[None])
        focal_length *= size[0] / width
    focal_input = np.array([focal_length], np.float32)
    return _run(runner, image=batch, focal_length=focal_input)["trajectory"]


# --- restore -------------------------------------------------------------------------------------------------


def restoration_function(runner: Runner, noise_level: float) -> RestoreFunction:
    """The restoration graph as a `RestoreFunction` at the noise level `noise_level`."""

    def restore(blurry: np.ndarray, trajectory: np.ndarray, camera: np.ndarray) -> np.ndarray:
        return _run(
            runner,
            blurry=blurry,
            trajectory=trajectory,
            intrinsics=np.asarray(camera, np.float32).reshape(1, 3, 3),
            sigma=np.array([noise_level], np.float32),
        )["restored"]

    return restore


def capped_margin(extent_px: float, tile_side: int, n_iter: int, warn: Callable[[str], object]) -> int:
    """The tile margin for a blur of `extent_px` and `n_iter` ADMM iterations (`tiling.tile_margin`), capped to what
    tiles of `tile_side` px allow (`tiling.max_margin`); a capped one is told to `warn`, as seams may show."""
    margin, cap = tile_margin(extent_px, n_iter), max_margin(tile_side)
    if margin > cap:
        warn(
            f"warning: a blur of {extent_px:.0f} px needs tile margins of {margin} px but tiles of "
            f"{tile_side} px allow {cap}: seams may show; raise the tile side to {4 * margin}"
        )
        margin = cap
    return margin


def restore_image(
    restore: RestoreFunction,
    batch: np.ndarray,
    poses: np.ndarray,
    camera: np.ndarray,
    *,
    tile_side: int | None,
    n_iter: int,
    warn: Callable[[str], object],
    progress: Progress = silent,
    stage: str = "restoring",
) -> tuple[np.ndarray, int]:
    """The restored batch and the number of tiles it took: whole, or in tiles when larger than `tile_side`, with
    margins as `capped_margin` gives them, each tile told to `progress` as `STAGE: tile K/N`."""
    height, width = batch.shape[-2:]
    if tile_side is not None and max(height, width) > tile_side:
        extent = blur_extent_px(poses[0], camera, height, width)
        return _restore_in_tiles(
            restore, batch, lambda _: poses, camera, tile_side, extent, n_iter, warn, progress, stage
        )
    return restore(batch, poses, camera), 1


def restore_rows(
    restore: RestoreFunction,
    batch: np.ndarray,
    motion: RowMotion,
    camera: np.ndarray,
    *,
    n_positions: int,
    tile_side: int | None,
    n_iter: int,
    warn: Callable[[str], object],
    progress: Progress = silent,
) -> tuple[np.ndarray, int]:
    """The restored batch and the number of tiles it took for motion that changes from row to row: in the motion's
    horizontal bands (and in tiles across an image wider than `tile_side`), each with its middle row's trajectory
    (checked), with margins for the widest blur of any row."""
    height, width = batch.shape[-2:]
    tile = tile_side or max(height, width)

    def trajectory_of(part: Tile) -> np.ndarray:
        return checked_poses(motion.trajectory_at(middle_row_fraction(part, height)), n_positions)

    extent = widest_blur(motion, camera, height, width)
    return _restore_in_tiles(
        restore, batch, trajectory_of, camera, tile, extent, n_iter, warn, progress, "restoring", motion.bands
    )


def _restore_in_tiles(
    restore: RestoreFunction,
    batch: np.ndarray,
    trajectory_of: Callable[[Tile], np.ndarray],
    camera: np.ndarray,
    tile: int,
    extent_px: float,
    n_iter: int,
    warn: Callable[[str], object],
    progress: Progress,
    stage: str,
    bands: int = 1,
) -> tuple[np.ndarray, int]:
    """Restore in tiles of at most `tile` px (and `bands` of rows) with margins for a blur of `extent_px`, each
    tile told to `progress` as `STAGE: tile K/N`."""

    def tell(number: int, total: int) -> None:
        progress(f"{stage}: tile {number}/{total}")

    margin = capped_margin(extent_px, tile, n_iter, warn)
    return restore_tiled(restore, batch, trajectory_of, camera, tile, margin, tell, bands)


def widest_blur(motion: RowMotion, camera: np.ndarray, height: int, width: int) -> float:
    """The largest blur extent (px) of the rows' trajectories, sampled at the band boundaries."""
    fractions = np.linspace(0.0, 1.0, motion.bands + 1)
    return max(blur_extent_px(motion.trajectory_at(float(f)), camera, height, width) for f in fractions)


def restore(
    batch: np.ndarray,
    camera: np.ndarray,
    trajectory: Trajectory | None,
    *,
    runners: Mapping[str, Runner],
    bundle: Bundle,
    settings: RestoreSettings,
    warn: Callable[[str], object],
    progress: Progress = silent,
) -> DeblurResult:
    """Restore a batch with the trajectory given, the trajectory net's estimate when None, or one per row (a
    `RowMotion`, restored in bands), timing each stage; the result's `restored` is the restored batch. The nets'
    `runners` are the bundle's trajectory and restoration graphs; a margin the tiles cannot hold is told to `warn`.
    """
    restoration = restoration_function(runners["restoration"], sigma(bundle, settings))
    timings: dict[str, float] = {}
    if isinstance(trajectory, RowMotion):
        started = time.perf_counter()
        restored, tiles_run = restore_rows(
            restoration,
            batch,
            trajectory,
            camera,
            n_positions=bundle.n_positions,
            tile_side=settings.tile_side,
            n_iter=n_iter(bundle),
            warn=warn,
            progress=progress,
        )
        timings["restoration"] = time.perf_counter() - started
        middle = checked_poses(trajectory.trajectory_at(0.5), bundle.n_positions)[0]
        return DeblurResult(restored, middle, camera, timings, tiles_run, row_motion=trajectory)
    if trajectory is None:
        started = time.perf_counter()
        poses = estimate(runners["trajectory"], batch, camera, settings.estimation_side, min_side(bundle))
        timings["trajectory"] = time.perf_counter() - started
    else:
        poses = checked_poses(trajectory, bundle.n_positions)
    started = time.perf_counter()
    restored, tiles_run = restore_image(
        restoration,
        batch,
        poses,
        camera,
        tile_side=settings.tile_side,
        n_iter=n_iter(bundle),
        warn=warn,
        progress=progress,
    )
    timings["restoration"] = time.perf_counter() - started
    return DeblurResult(restored, poses[0], camera, timings, tiles_run)


# --- sequence and reblur -------------------------------------------------------------------------------------


def eight_bit_frames(run: GraphFunction) -> GraphFunction:
    """The sequence graph with its frames rounded to uint8 (`pixels.quantize`) as they come out."""

    def converted(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        outputs = dict(run(inputs))
        if "frames" in outputs:
            outputs["frames"] = quantize(np.asarray(outputs["frames"]))
        return outputs

    return converted


def sequence_function(
    runner: Runner, warp_side: int | None, keep: tuple[str, ...], eight_bit: bool = False
) -> GraphFunction:
    """The sequence graph as a function assembling the outputs in `keep`, in tiles of `warp_side` px on larger
    images (None: whole; with `eight_bit`, the frames rounded to uint8 as each tile comes out)."""
    run = eight_bit_frames(graph_function(runner)) if eight_bit else graph_function(runner)
    return run if warp_side is None else warp_tiled(run, warp_side, keep)


def sequence_outputs(
    runner: Runner,
    sharp: np.ndarray,
    trajectory: Trajectory,
    camera: np.ndarray,
    keep: tuple[str, ...],
    *,
    bundle: Bundle,
    settings: RestoreSettings,
    eight_bit: bool = False,
) -> dict[str, np.ndarray]:
    """The sequence graph's outputs in `keep` for an HxWx3 float32 RGB image under a trajectory, or band by band
    under one per row (`sequence_rows`), both checked; in warp tiles as `settings` say, and with `eight_bit` the
    frames rounded tile by tile."""
    run = sequence_function(runner, warp_tile_side(settings.tile_side), keep, eight_bit)
    if isinstance(trajectory, RowMotion):
        return sequence_rows(run, sharp, trajectory, camera, keep, bundle.n_positions, min_side(bundle))
    return dict(run(_sequence_inputs(sharp, trajectory, camera, bundle.n_positions, min_side(bundle))))


def sequence_rows(
    run: GraphFunction,
    sharp: np.ndarray,
    motion: RowMotion,
    camera: np.ndarray,
    keep: tuple[str, ...],
    n_positions: int,
    min_side_px: int,
) -> dict[str, np.ndarray]:
    """The outputs in `keep` of the sequence graph `run`, band by band, each band warped with its middle row's
    trajectory (margins of one blur extent, so each band's core is what its trajectory makes of it)."""
    height, width = sharp.shape[:2]
    margin = warp_margin(widest_blur(motion, camera, height, width))

    def band_outputs(band: Tile) -> Mapping[str, np.ndarray]:
        poses = motion.trajectory_at(middle_row_fraction(band, height))
        window = np.ascontiguousarray(sharp[band.y0 : band.y1])
        band_camera = camera_model.tile_intrinsics(camera, 0, band.y0)
        return run(_sequence_inputs(window, poses, band_camera, n_positions, min_side_px))

    bands = tiles(height, width, max(height, width), margin, motion.bands)
    return assemble(bands, band_outputs, keep, height, width)


def _sequence_inputs(
    sharp: np.ndarray, trajectory: np.ndarray, camera: np.ndarray, n_positions: int, min_side_px: int
) -> dict[str, np.ndarray]:
    """The sequence graph's inputs for an HxWx3 float32 RGB image under a `(P, 3)` trajectory, both checked."""
    return {
        "sharp": rgb_batch(sharp, min_side_px),
        "trajectory": checked_poses(trajectory, n_positions),
        "intrinsics": np.asarray(camera, np.float32).reshape(1, 3, 3),
    }


def sequence(
    sharp: np.ndarray,
    trajectory: Trajectory,
    camera: np.ndarray,
    *,
    runner: Runner,
    bundle: Bundle,
    settings: RestoreSettings,
    eight_bit: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The sharp frames `(P, H, W, 3)` of an HxWx3 float32 RGB image under a trajectory (or one per row) and their
    mean, by the bundle's sequence graph (`runner`), tiled as `settings` say; `eight_bit` gives uint8 frames."""
    keep = ("frames", "reblurred")
    outputs = sequence_outputs(
        runner, sharp, trajectory, camera, keep, bundle=bundle, settings=settings, eight_bit=eight_bit
    )
    return outputs["frames"][0].transpose(0, 2, 3, 1), outputs["reblurred"][0].transpose(1, 2, 0)


def reblur(
    sharp: np.ndarray,
    trajectory: Trajectory,
    camera: np.ndarray,
    *,
    runner: Runner,
    bundle: Bundle,
    settings: RestoreSettings,
) -> np.ndarray:
    """An HxWx3 float32 RGB image blurred by a trajectory or one per row (the mean of its sharp frames, which are
    not kept), by the bundle's sequence graph (`runner`), tiled as `settings` say."""
    outputs = sequence_outputs(runner, sharp, trajectory, camera, ("reblurred",), bundle=bundle, settings=settings)
    return outputs["reblurred"][0].transpose(1, 2, 0)


# --- refine --------------------------------------------------------------------------------------------------


def refine_function(runner: Runner, warp_side: int | None) -> GraphFunction:
    """The refine graph as a function, in tiles of `warp_side` px on larger images (None: whole)."""
    run = graph_function(runner)
    return run if warp_side is None else refine_tiled(run, warp_side)


def refinement(
    blurry: np.ndarray,
    restored: np.ndarray,
    trajectory: np.ndarray,
    camera: np.ndarray,
    settings: RefineSettings,
    *,
    runners: Mapping[str, Runner],
    n_positions: int,
    warp_side: int | None,
) -> RefineResult:
    """Refine a `(P, 3)` trajectory against the reblur error of the restored batch (clipped to [0, 1]) by the
    refinement's `runners` (refine, and the sequence graph for the loss-only evaluations), in warp tiles."""
    run_refine = refine_function(runners["refine"], warp_side)
    run_sequence = sequence_function(runners["sequence"], warp_side, ("reblurred",))
    latent = np.clip(restored, 0, 1)
    return refine_trajectory(
        run_refine,
        blurry,
        latent,
        trajectory,
        camera,
        settings,
        n_positions=n_positions,
        run_sequence=run_sequence,
    )


def unrefined(
    image: np.ndarray, result: DeblurResult, *, min_side_px: int, n_positions: int
) -> tuple[np.ndarray, DeblurResult]:
    """An HxWx3 float32 RGB image and an unrefined `result` of restoring it as `refine` takes them: the image's
    batch, and the result with its restored image as a batch, its trajectory checked and only the first
    restoration's timings. ValueError for a result that cannot be refined: already refined, restored with one
    trajectory per row, or of another image."""
    if result.refinement is not None:
        raise ValueError("the result is already refined")
    if result.row_motion is not None:
        raise ValueError("a result restored with one trajectory per row (a rolling shutter) is not refined")
    batch = rgb_batch(image, min_side_px)
    restored = np.ascontiguousarray(result.restored.transpose(2, 0, 1)[None])
    if restored.shape != batch.shape:
        raise ValueError(
            f"the result is {result.restored.shape[1]}x{result.restored.shape[0]} but the image is "
            f"{image.shape[1]}x{image.shape[0]}: refine a result with the image it was restored from"
        )
    timings = {name: value for name, value in result.timings.items() if name in ("trajectory", "restoration")}
    trajectory = checked_poses(result.trajectory, n_positions)[0]
    return batch, replace(result, restored=restored, trajectory=trajectory, timings=timings)


def refine(
    batch: np.ndarray,
    result: DeblurResult,
    *,
    runners: Mapping[str, Runner],
    refine_runners: Mapping[str, Runner],
    bundle: Bundle,
    restore_settings: RestoreSettings,
    refine_settings: RefineSettings,
    warn: Callable[[str], object],
    progress: Progress = silent,
) -> DeblurResult:
    """Refine the trajectory of an unrefined `result` of `restore` (its `restored` the restored batch) on the reblur
    error against `batch`, and restore again with the refined one if `refine_settings.rerun`, by the nets'
    `runners`; the refinement's graphs are `refine_runners` (refine, sequence)."""
    timings = dict(result.timings)
    started = time.perf_counter()
    refined = refinement(
        batch,
        result.restored,
        result.trajectory,
        result.intrinsics,
        refine_settings,
        runners=refine_runners,
        n_positions=bundle.n_positions,
        warp_side=warp_tile_side(restore_settings.tile_side),
    )
    poses = refined.trajectory[None]
    timings["refine"] = time.perf_counter() - started
    restored, tiles_run = result.restored, result.tiles
    if refine_settings.rerun:
        started = time.perf_counter()
        restored, tiles_run = restore_image(
            restoration_function(runners["restoration"], sigma(bundle, restore_settings)),
            batch,
            poses,
            result.intrinsics,
            tile_side=restore_settings.tile_side,
            n_iter=n_iter(bundle),
            warn=warn,
            progress=progress,
            stage="restoring again",
        )
        timings["restoration_rerun"] = time.perf_counter() - started
    return DeblurResult(restored, poses[0], result.intrinsics, timings, tiles_run, refined)
