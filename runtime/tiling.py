"""Restore a large image in overlapping tiles, with exact projective geometry in every tile.

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
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from runtime.camera import point_paths, tile_intrinsics

#: Tile origins are multiples of this (the prior downsamples three times).
ALIGN = 8
#: Margin in blur extents: `MARGIN_EXTENTS_BASE + MARGIN_EXTENTS_PER_ITERATION * n_iter` (see the module notes).
MARGIN_EXTENTS_BASE = 2.0
MARGIN_EXTENTS_PER_ITERATION = 0.5
#: Smallest margin, for the prior's receptive field when the blur is small.
MIN_MARGIN = 64
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


def restore_tiled(
    restore: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    blurry: np.ndarray,
    trajectory: np.ndarray,
    camera: np.ndarray,
    tile: int,
    margin: int,
) -> tuple[np.ndarray, int]:
    """Restore `blurry (1, 3, H, W)` tile by tile with `restore(blurry_tile, trajectory, tile_camera)`.

    Returns the restored image and the number of tiles.
    """
    height, width = blurry.shape[-2:]
    restored = np.empty_like(blurry)
    rows, columns = tile_spans(height, tile, margin), tile_spans(width, tile, margin)
    for y0, y1, core_y0, core_y1 in rows:
        for x0, x1, core_x0, core_x1 in columns:
            part = restore(np.ascontiguousarray(blurry[..., y0:y1, x0:x1]), trajectory, tile_intrinsics(camera, x0, y0))
            restored[..., core_y0:core_y1, core_x0:core_x1] = part[
                ..., core_y0 - y0 : core_y1 - y0, core_x0 - x0 : core_x1 - x0
            ]
    return restored, len(rows) * len(columns)
