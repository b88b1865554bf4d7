"""Restore a large image in overlapping tiles, with exact projective geometry in every tile.

Each tile is restored as an image of its own whose intrinsics carry the tile's offset (principal point shifted),
so the blur operator inside the tile is the same as in the whole image. Tiles overlap by a margin of at least the
blur extent; only each tile's core (the part no other tile owns) is kept. Tile origins are multiples of 8 so the
prior's stride-2 stages see the same pixel grid as in the whole image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from runtime.camera import point_paths, tile_intrinsics

#: Tile origins are multiples of this (the prior downsamples three times).
ALIGN = 8
#: Margin as a multiple of the blur extent: the unrolled ADMM spreads information by about one extent per step.
MARGIN_PER_EXTENT = 4
MIN_MARGIN = 64


def blur_extent_px(trajectory: np.ndarray, camera: np.ndarray, height: int, width: int) -> float:
    """How far, in pixels, any corner or the centre of the image moves over the trajectory."""
    points = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1], [width / 2, height / 2]])
    paths = point_paths(trajectory.astype(np.float64), camera, points)
    return float(np.abs(paths - points[None]).max())


def tile_margin(extent_px: float) -> int:
    """Overlap on each side of a tile core: a multiple of the blur extent, at least `MIN_MARGIN`, aligned."""
    margin = max(MIN_MARGIN, MARGIN_PER_EXTENT * extent_px)
    return int(np.ceil(margin / ALIGN) * ALIGN)


def tile_spans(length: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Along one axis: `(start, end, core_start, core_end)` per tile. Cores partition `[0, length)`; a tile is its
    core widened by `margin` each side, at most `tile` long, with an origin that is a multiple of `ALIGN`."""
    core = max(ALIGN, (tile - 2 * margin) // ALIGN * ALIGN)
    if length <= tile:
        return [(0, length, 0, length)]
    spans = []
    for core_start in range(0, length, core):
        core_end = min(length, core_start + core)
        start = max(0, (core_start - margin) // ALIGN * ALIGN)
        spans.append((start, min(length, core_end + margin), core_start, core_end))
    return spans


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
