"""Run the graphs on a large image in overlapping tiles, with exact projective geometry in every tile.

Each tile is restored as an image of its own whose intrinsics carry the tile's offset (principal point shifted),
so the blur operator inside the tile is the same as in the whole image. Tiles overlap by a margin; only each
tile's core (the part no other tile owns) is kept. Tile origins are multiples of 8 so the prior's stride-2 stages
see the same pixel grid as in the whole image.

How wide the margin must be. A tile differs from the whole image only at its cut edges: the blur operator
reflects there instead of reading the neighbouring pixels, and the prior's convolutions see padding. The error
starts at the cut and travels inwards with every operator of the unrolled ADMM: the blur operator and its
adjoint each carry it by up to one blur extent, the prior by its (effective) receptive field. Measured with
random-weight nets (nc 4-32) and a recorded trajectory (extent 14.7 px) on 256x256 in 2x2 tiles, max abs error
tiled vs whole, for margins of 2.2 / 3.3 / 4.3 extents:
- prior replaced by the identity (pure unrolled deconvolution, the slowest decay), 2 iterations:
  1.4e-3 / 1.9e-4 / 8.9e-7; 8 iterations: 2.4e-2 / 6.3e-3 / 7.1e-4, and 9.3e-5 at 5.4 extents;
- random ResUNet priors damp it: 2 iterations 1.1e-4 / 5.4e-6 / 3.3e-7; 8 iterations (nb 1 or 2) 2.1e-4 to
  2.5e-4 / 1e-5 / 5e-7.
Hence the rule: `2 + n_iter / 2` extents (3 for 2 iterations, 6 for the reference's 8), at least `MIN_MARGIN` px
for the prior alone, which keeps tiled within 1e-3 of whole (a quarter of an 8-bit level) in every case above.
Trained weights were not available to measure; a trained prior is expected between the two cases.

The graphs that only warp (sequence, refine) need no such rule: a pixel's output reads the image within one blur
extent of it, so a margin of one extent (plus the bilinear cell) makes every core exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from runtime.core.camera import point_paths, tile_intrinsics
from runtime.core.refine import GraphFunction

#: Tile origins are multiples of this (the prior downsamples three times).
ALIGN = 8
#: Margin in blur extents: `MARGIN_EXTENTS_BASE + MARGIN_EXTENTS_PER_ITERATION * n_iter` (see the module notes).
MARGIN_EXTENTS_BASE = 2.0
MARGIN_EXTENTS_PER_ITERATION = 0.5
#: Smallest margin, for the prior's receptive field when the blur is small.
MIN_MARGIN = 64
#: Warp graphs' margin beyond the blur extent: the bilinear cell and the derivative samples' next pixel.
WARP_MARGIN_PX = 2
#: Tile side for the warp graphs (sequence, refine) on large images. onnxruntime's CPU provider ran the demo
#: sequence graph at 1.2-1.4 us per pixel up to 512x512 and 3.3-4.5 us at 1024x1024, where it took 4.7 GB
#: (0.9 GB at 512x512; `docs/tiling-and-memory.md`).
WARP_TILE_SIDE = 512
#: Fewest rows in the core of a band (`tiles`), so that every band's window still holds the bundles' 32 px.
MIN_BAND_ROWS = 4 * ALIGN
#: The reference's number of ADMM iterations, assumed when a bundle does not record it.
DEFAULT_N_ITER = 8


def blur_extent_px(trajectory: np.ndarray, camera: np.ndarray, height: int, width: int) -> float:
    """How far, in pixels along x or y, any corner or the centre of the image moves over the trajectory."""
    points = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1], [width / 2, height / 2]])
    paths = point_paths(np.asarray(trajectory, dtype=np.float64), camera, points)
    return float(np.abs(paths - points[None]).max())


def tile_margin(extent_px: float, n_iter: int = DEFAULT_N_ITER) -> int:
    """Overlap on each side of a tile core for a blur of `extent_px` and `n_iter` ADMM iterations, aligned."""
    margin = max(MIN_MARGIN, (MARGIN_EXTENTS_BASE + MARGIN_EXTENTS_PER_ITERATION * n_iter) * extent_px)
    return math.ceil(margin / ALIGN) * ALIGN


def max_margin(tile: int) -> int:
    """The widest margin tiles of `tile` px allow: one that leaves every core at least half a tile."""
    return tile // 4 // ALIGN * ALIGN


def tile_spans(length: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Along one axis: `(start, end, core_start, core_end)` per tile, fewest tiles first.

    Cores partition `[0, length)` in near-equal parts whose bounds are multiples of `ALIGN`; a tile is its core
    widened by `margin` each side (clipped to the axis), at most `tile` long, so its origin is a multiple of
    `ALIGN` too. An axis no longer than `tile` is one tile.
    """
    if length <= tile:
        return [(0, length, 0, length)]
    if margin < 0 or margin % ALIGN:
        raise ValueError(f"tile margin must be a non-negative multiple of {ALIGN}, got {margin}")
    if tile < 2 * margin + 2 * ALIGN:
        raise ValueError(f"tiles of {tile} px cannot hold a core between margins of {margin} px")
    # Cores of the widest size a middle tile allows always fit; near-equal cores often need fewer tiles.
    widest = (tile - 2 * margin) // ALIGN * ALIGN
    fixed = [0, *range(widest, length, widest), length]
    for count in range(2, len(fixed)):
        bounds = [0, *(round(i * length / count / ALIGN) * ALIGN for i in range(1, count)), length]
        spans = _spans(bounds, length, margin)
        if all(core_end > core_start and end - start <= tile for start, end, core_start, core_end in spans):
            return spans
    return _spans(fixed, length, margin)


def _spans(bounds: list[int], length: int, margin: int) -> list[tuple[int, int, int, int]]:
    return [(max(0, a - margin), min(length, b + margin), a, b) for a, b in zip(bounds, bounds[1:], strict=False)]


@dataclass(frozen=True)
class Tile:
    """One tile of an image: the window the graph sees (`y0:y1, x0:x1`) and the core it owns in the result."""

    y0: int
    y1: int
    x0: int
    x1: int
    core_y0: int
    core_y1: int
    core_x0: int
    core_x1: int

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The tile's window of an array whose last two axes are the image's rows and columns."""
        return np.ascontiguousarray(array[..., self.y0 : self.y1, self.x0 : self.x1])

    def core(self, part: np.ndarray) -> np.ndarray:
        """The core of what a graph made from this tile (last two axes: the tile's rows and columns)."""
        rows = slice(self.core_y0 - self.y0, self.core_y1 - self.y0)
        return part[..., rows, self.core_x0 - self.x0 : self.core_x1 - self.x0]

    def place(self, whole: np.ndarray, part: np.ndarray) -> None:
        """Write the core of `part` into its place in `whole`."""
        whole[..., self.core_y0 : self.core_y1, self.core_x0 : self.core_x1] = self.core(part)

    def core_mask(self) -> np.ndarray:
        """`(1, 1, h, w)` float32 over the tile's window: 1 on its core, 0 on its margins."""
        mask = np.zeros((1, 1, self.y1 - self.y0, self.x1 - self.x0), np.float32)
        self.core(mask)[...] = 1
        return mask


def tiles(height: int, width: int, tile: int, margin: int, bands: int = 1) -> list[Tile]:
    """The tiles of an image, row by row (see `tile_spans`); one tile when neither side exceeds `tile`.

    With `bands`, the rows are cut in at least that many near-equal cores (no core under `MIN_BAND_ROWS`), for
    motion that changes from row to row.
    """
    rows, columns = tile_spans(height, tile, margin), tile_spans(width, tile, margin)
    bands = min(bands, max(1, height // MIN_BAND_ROWS))
    if len(rows) < bands:
        bounds = sorted({0, height, *(round(i * height / bands / ALIGN) * ALIGN for i in range(1, bands))})
        rows = _spans(bounds, height, margin)
    return [Tile(*row[:2], *column[:2], *row[2:], *column[2:]) for row in rows for column in columns]


def middle_row_fraction(tile: Tile, height: int) -> float:
    """Where the middle of a tile's core lies, as a fraction of the image's height (0 the top row, 1 the bottom)."""
    return (tile.core_y0 + tile.core_y1 - 1) / 2 / max(1, height - 1)


def restore_tiled(
    restore: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    blurry: np.ndarray,
    trajectory_of: Callable[[Tile], np.ndarray],
    camera: np.ndarray,
    tile: int,
    margin: int,
    progress: Callable[[int, int], object] | None = None,
    bands: int = 1,
) -> tuple[np.ndarray, int]:
    """Restore `blurry (1, 3, H, W)` tile by tile with `restore(blurry_tile, trajectory_of(tile), tile_camera)`,
    calling `progress(number, total)` before each tile (numbered from 1); `bands` as in `tiles`.

    Returns the restored image and the number of tiles.
    """
    height, width = blurry.shape[-2:]
    restored = np.empty_like(blurry)
    parts = tiles(height, width, tile, margin, bands)
    for number, part in enumerate(parts, 1):
        if progress is not None:
            progress(number, len(parts))
        camera_of_tile = tile_intrinsics(camera, part.x0, part.y0)
        part.place(restored, restore(part.crop(blurry), trajectory_of(part), camera_of_tile))
    return restored, len(parts)


def warp_margin(extent_px: float) -> int:
    """Overlap for graphs that only warp (sequence, refine): one blur extent and a bilinear cell, aligned."""
    return math.ceil((extent_px + WARP_MARGIN_PX) / ALIGN) * ALIGN


def warp_tiled(run: GraphFunction, tile_side: int, keep: Sequence[str]) -> GraphFunction:
    """The sequence graph `run` tile by tile, in tiles of `tile_side` px (more for a blur too wide for them).

    The graph's outputs at a pixel depend on its image within one blur extent, so cores are exact and tiled
    equals whole up to float rounding; the outputs named in `keep` are assembled (frames need P times the
    image's memory, the reblurred image does not).
    """

    def tiled(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        windows = _warp_tiles(inputs, tile_side)
        if len(windows) == 1:
            outputs = run(inputs)
            return {name: outputs[name] for name in keep}
        height, width = inputs["sharp"].shape[-2:]
        return assemble(windows, lambda window: run(_tile_inputs(inputs, window)), keep, height, width)

    return tiled


def assemble(
    windows: Sequence[Tile],
    outputs_of: Callable[[Tile], Mapping[str, np.ndarray]],
    keep: Sequence[str],
    height: int,
    width: int,
) -> dict[str, np.ndarray]:
    """The outputs named in `keep` of a graph run tile by tile (`outputs_of(tile)`), each tile's core placed into
    arrays of the whole image's `height` x `width`."""
    whole: dict[str, np.ndarray] = {}
    for window in windows:
        outputs = outputs_of(window)
        for name in keep:
            part = np.asarray(outputs[name])
            if name not in whole:
                whole[name] = np.empty((*part.shape[:-2], height, width), part.dtype)
            window.place(whole[name], part)
    return whole


def refine_tiled(run_refine: GraphFunction, tile_side: int) -> GraphFunction:
    """The refine graph `run_refine` tile by tile, in tiles of `tile_side` px (more for a blur too wide for them).

    The loss is a masked mean over pixels and the gradient its derivative, so each tile runs with the mask cut
    to its core and the tiles' losses and gradients are averaged, weighted by their cores' mask sums: the
    whole image's loss and gradient up to float rounding.
    """

    def tiled(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        windows = _warp_tiles(inputs, tile_side)
        if len(windows) == 1:
            return run_refine(inputs)
        loss, gradient, weight = np.zeros(1), np.zeros(inputs["trajectory"].shape), 0.0
        for window in windows:
            tile_inputs = _tile_inputs(inputs, window)
            tile_inputs["mask"] = tile_inputs["mask"] * window.core_mask()
            tile_weight = float(tile_inputs["mask"].sum(dtype=np.float64))
            if tile_weight == 0:
                continue
            outputs = run_refine(tile_inputs)
            loss += tile_weight * np.asarray(outputs["loss"], np.float64)
            gradient += tile_weight * np.asarray(outputs["gradient"], np.float64)
            weight += tile_weight
        scale = 1 / weight if weight > 0 else 0.0
        return {"loss": (loss * scale).astype(np.float32), "gradient": (gradient * scale).astype(np.float32)}

    return tiled


def _warp_tiles(inputs: Mapping[str, np.ndarray], tile_side: int) -> list[Tile]:
    """The tiles for one run of a warp graph: margins of one blur extent, tiles widened to hold them."""
    height, width = next(value for value in inputs.values() if value.ndim == 4).shape[-2:]
    camera = inputs["intrinsics"][0]
    margin = warp_margin(blur_extent_px(inputs["trajectory"][0], camera, height, width))
    return tiles(height, width, max(tile_side, 4 * margin), margin)


def _tile_inputs(inputs: Mapping[str, np.ndarray], window: Tile) -> dict[str, np.ndarray]:
    """A warp graph's inputs for one tile: images cropped, intrinsics shifted, the trajectory as it is."""
    cropped = {name: window.crop(value) if value.ndim == 4 else value for name, value in inputs.items()}
    cropped["intrinsics"] = tile_intrinsics(inputs["intrinsics"][0], window.x0, window.y0)[None].astype(np.float32)
    return cropped
