"""Pictures of an estimated camera shake: the local blur kernels over the photo, the trajectory as a plot, and
labelled images side by side.

Pure functions returning uint8 BGR images (OpenCV's convention, ready for `cv2.imwrite`). Drawn with numpy and
OpenCV only (`runtime.io.drawing`), so the runtime stays light (no matplotlib, no torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import numpy.typing as npt

from runtime.core.camera import intrinsics, point_paths
from runtime.io.drawing import (
    FONT,
    INK,
    PITCH_YAW_ROLL,
    START,
    Axes,
    Colour,
    FloatArray,
    ImageArray,
    draw_frame,
    draw_legend,
    draw_polyline,
    draw_text,
    nice_ticks,
    padded_range,
)

#: Kernels are never magnified beyond this: a sub-pixel shake is drawn small rather than blown up from noise.
MAX_MAGNIFICATION = 25.0
#: The largest kernel's reach, as a fraction of its patch's half-width.
KERNEL_FILL = 0.85

PATH: Colour = (140, 50, 90)
END: Colour = (40, 40, 220)


# --- blur kernels ------------------------------------------------------------------------------------------------


def render_kernel(path_px: npt.ArrayLike, size: int, magnify: float = 1.0) -> FloatArray:
    """One point's blur kernel rasterised on a `size x size` patch, summing to 1 (all zero if nothing lands).

    `path_px` `(P, 2)` is the point's displacement (x, y px) under each pose; zero displacement is the patch
    centre `(size-1)/2` and displacements are scaled by `magnify`. The camera is taken to dwell one time slot on
    each pose and to move linearly between poses: the path is sampled uniformly in time over `[-1/2, P-1/2]`
    (pose i at time i, the ends held) and splatted bilinearly. So a sparse path draws as a continuous stroke,
    and the kernel's centroid is exactly the mean displacement, as in the blur model (poses weigh equally).
    """
    path = np.asarray(path_px, dtype=np.float64).reshape(-1, 2) * magnify
    poses = path.shape[0]
    longest = float(np.linalg.norm(np.diff(path, axis=0), axis=1).max()) if poses > 1 else 0.0
    # Samples per pose slot: spaced under half a pixel, and even so that every pose time is a boundary of
    # the midpoint rule's cells: the rule then integrates the piecewise-linear path exactly.
    per_pose = min(max(2, 2 * math.ceil(longest)), 512)
    times = -0.5 + (np.arange(poses * per_pose) + 0.5) / per_pose
    centre = (size - 1) / 2
    x = np.interp(times, np.arange(poses), path[:, 0]) + centre
    y = np.interp(times, np.arange(poses), path[:, 1]) + centre
    kernel = _splat(x, y, size)
    total = kernel.sum()
    return kernel / total if total > 0 else kernel


def _splat(x: FloatArray, y: FloatArray, size: int) -> FloatArray:
    """Bilinear splatting of unit-weight samples onto a `size x size` grid; weight falling outside is dropped."""
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    flat = np.zeros(size * size)
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        col, row = x0 + dx, y0 + dy
        inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
        index = (row[inside] * size + col[inside]).astype(np.int64)
        flat += np.bincount(index, weights=weight[inside], minlength=size * size)
    return flat.reshape(size, size)


def grid_points(height: int, width: int, grid: tuple[int, int]) -> FloatArray:
    """Integer pixel centres `(rows*cols, 2)` xy of a rows x cols grid of equal cells, row by row."""
    rows, cols = grid
    xs = np.floor((np.arange(cols) + 0.5) * width / cols)
    ys = np.floor((np.arange(rows) + 0.5) * height / rows)
    grid_x, grid_y = np.meshgrid(xs, ys)
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)


def kernel_field(
    image_bgr: npt.ArrayLike,
    trajectory: npt.ArrayLike | Callable[[float], npt.ArrayLike],
    camera: npt.ArrayLike,
    grid: tuple[int, int] | None = None,
    cell_px: int | None = None,
) -> ImageArray:
    """The photo, dimmed, with the local blur kernel drawn at each point of a rows x cols grid.

    Rotational shake blurs differently across the frame (roll most of all); this shows how. Each kernel is the
    point's path under the poses (`camera.point_paths`, relative to the point), rendered by `render_kernel`,
    magnified by one common factor so the largest fills most of its cell (the factor is written in the corner),
    colour-mapped and alpha-blended at the point, inside a thin box. No motion draws a dot. The default grid is
    5 x 7 on a landscape image and 7 x 5 on a portrait one. `trajectory` may be a function of the row (its
    fraction of the height, 0 at the top), as under a rolling shutter: each point then follows its row's.
    """
    canvas = _dimmed(np.asarray(image_bgr))
    height, width = canvas.shape[:2]
    if grid is None:
        grid = (5, 7) if width >= height else (7, 5)
    points = grid_points(height, width, grid)
    if callable(trajectory):
        paths = [point_paths(trajectory(y / max(1, height - 1)), camera, [[x, y]]) for x, y in points]
        displacements = np.concatenate(paths, axis=1) - points  # (P, N, 2)
    else:
        displacements = point_paths(trajectory, camera, points) - points
    if cell_px is None:
        cell_px = int(0.9 * min(height / grid[0], width / grid[1]))
    size = max(3, cell_px if cell_px % 2 else cell_px - 1)  # odd: zero displacement lands on a pixel
    reach = float(np.abs(displacements).max()) if displacements.size else 0.0
    fill = KERNEL_FILL * (size - 1) / 2
    magnify = fill / max(reach, fill / MAX_MAGNIFICATION)
    # The label goes under the kernels (its box is translucent), so it never hides the top-left kernel.
    _corner_label(canvas, f"kernels x{magnify:.1f}" if magnify >= 0.95 else f"kernels x{magnify:.2f}")
    for index, (x, y) in enumerate(points.astype(int)):
        kernel = render_kernel(displacements[:, index], size, magnify)
        _blend_kernel(canvas, _display_kernel(kernel), int(x), int(y))
    return canvas


def _dimmed(image: np.ndarray) -> ImageArray:
    """A half-desaturated, darkened copy of a uint8 BGR (or grey) image, so coloured kernels stand out on it."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[..., None].astype(np.float32)
    dimmed = 0.45 * (0.5 * image.astype(np.float32) + 0.5 * grey)
    return np.clip(dimmed + 0.5, 0, 255).astype(np.uint8)


def _display_kernel(kernel: FloatArray) -> FloatArray:
    """A kernel as display intensity in [0, 1]: thickened to suit the patch, scaled to max 1, faint parts lifted."""
    peak = kernel.max()
    if peak <= 0:
        return kernel
    sigma = max(0.6, kernel.shape[0] / 70)
    soft = cv2.GaussianBlur((kernel / peak).astype(np.float32), (0, 0), sigma).astype(np.float64)
    return np.sqrt(soft / soft.max())


def _blend_kernel(canvas: ImageArray, value: FloatArray, x: int, y: int) -> None:
    """Alpha-blend a colour-mapped `value` patch (alpha = value) centred on pixel (x, y), with an outline box."""
    size = value.shape[0]
    half = size // 2
    colours = cv2.applyColorMap(np.round(value * 255).astype(np.uint8), cv2.COLORMAP_PLASMA).astype(np.float32)
    alpha = np.clip(1.4 * value, 0, 1).astype(np.float32)[..., None]
    height, width = canvas.shape[:2]
    top, left = y - half, x - half
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + size, height), min(left + size, width)
    if r0 >= r1 or c0 >= c1:
        return
    patch = (slice(r0 - top, r1 - top), slice(c0 - left, c1 - left))
    region = canvas[r0:r1, c0:c1].astype(np.float32)
    blended = region * (1 - alpha[patch]) + colours[patch] * alpha[patch]
    canvas[r0:r1, c0:c1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    cv2.rectangle(canvas, (left, top), (left + size - 1, top + size - 1), (150, 150, 150), 1)


def _corner_label(canvas: ImageArray, text: str) -> None:
    """White text on a translucent dark box in the top-left corner, scaled to the image."""
    scale = float(np.clip(min(canvas.shape[:2]) / 900, 0.3, 1.0))
    thickness = max(1, round(2 * scale))
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    pad = max(2, round(5 * scale))
    box = canvas[: text_h + baseline + 2 * pad, : text_w + 2 * pad]
    box[:] = np.round(0.35 * box.astype(np.float32) + 0.65 * 20).astype(np.uint8)
    cv2.putText(canvas, text, (pad, pad + text_h), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


# --- trajectory plot ---------------------------------------------------------------------------------------------


def trajectory_plot(
    trajectory: npt.ArrayLike,
    focal_length_px: float,
    image_size: tuple[int, int],
    size: tuple[int, int] = (480, 960),
) -> ImageArray:
    """A figure `(size[0], size[1], 3)` of a camera trajectory, for people to read.

    Left: pitch, yaw and roll in degrees against pose index. Right: the path of the image centre in pixels
    (x right, y down, equal aspect; dot = first pose, arrow = last pose), i.e. the blur kernel at the centre of
    an `image_size` (H, W) photo taken with this focal length.
    """
    poses = np.asarray(trajectory, dtype=np.float64).reshape(-1, 3)
    height, width = size
    scale = min(height / 480, width / 960)
    figure = np.full((height, width, 3), 255, np.uint8)
    image_h, image_w = image_size
    title = f"Camera shake: {len(poses)} poses, f = {focal_length_px:.0f} px, image {image_w}x{image_h}"
    draw_text(figure, title, (width // 2, round(24 * scale)), 0.62 * scale, INK, anchor="centre", bold=True)

    top, bottom = round(70 * scale), height - round(80 * scale)
    split = width // 2
    angles = np.degrees(poses)
    _angle_panel(figure, angles, (round(78 * scale), top, split - round(24 * scale), bottom), scale)

    camera = intrinsics(image_h, image_w, focal_length_px)
    centre = np.array([[image_w / 2, image_h / 2]])
    path = point_paths(poses, camera, centre)[:, 0] - centre[0]  # (P, 2) px, relative to the rest position
    _centre_panel(figure, path, (split + round(78 * scale), top, width - round(24 * scale), bottom), scale)
    return figure


def _angle_panel(figure: ImageArray, angles: FloatArray, rect: tuple[int, int, int, int], scale: float) -> None:
    """Pitch, yaw and roll (degrees) against pose index, with a zero line and a legend."""
    left, top, right, bottom = rect
    count = len(angles)
    x_range = (0.0, float(max(count - 1, 1)))
    y_range = padded_range(np.append(angles.ravel(), 0.0), pad=0.08, minimum_span=0.02)
    axes = Axes(left, top, right, bottom, x_range, y_range)
    x_ticks = nice_ticks(*x_range, count=max(2, (right - left) // round(60 * scale)), integer=True)
    y_ticks = nice_ticks(*y_range, count=max(2, (bottom - top) // round(45 * scale)))
    draw_frame(figure, axes, x_ticks, y_ticks, "pose index", "angle (deg)", "Rotation per pose", scale)
    draw_polyline(figure, axes.to_px([x_range[0], x_range[1]], [0.0, 0.0]), (120, 120, 120), max(1, round(scale)))
    index = np.arange(count)
    for column, (_, colour) in enumerate(PITCH_YAW_ROLL):
        draw_polyline(figure, axes.to_px(index, angles[:, column]), colour, max(2, round(2 * scale)))
    draw_legend(figure, [(name, colour, "line") for name, colour in PITCH_YAW_ROLL], (right, top), scale)


def _centre_panel(figure: ImageArray, path: FloatArray, rect: tuple[int, int, int, int], scale: float) -> None:
    """The image centre's path in pixels, equal aspect, start dot and end arrow, extent written below."""
    left, top, right, bottom = rect
    x_range, y_range = _equal_aspect_ranges(path, right - left, bottom - top)
    axes = Axes(left, top, right, bottom, x_range, y_range, y_down=True)
    ticks = max(2, min(right - left, bottom - top) // round(55 * scale))
    x_ticks = nice_ticks(*x_range, count=ticks)
    y_ticks = nice_ticks(*y_range, count=ticks)
    draw_frame(figure, axes, x_ticks, y_ticks, "x (px)", "y (px)", "Path of the image centre", scale)
    crosshair = (120, 120, 120)
    draw_polyline(figure, axes.to_px(list(x_range), [0.0, 0.0]), crosshair, 1)
    draw_polyline(figure, axes.to_px([0.0, 0.0], list(y_range)), crosshair, 1)

    points = axes.to_px(path[:, 0], path[:, 1])
    draw_polyline(figure, points, PATH, max(2, round(2 * scale)))
    for point in points:
        cv2.circle(figure, _fixed(point), round(2.5 * scale * 16), PATH, -1, cv2.LINE_AA, 4)
    cv2.circle(figure, _fixed(points[0]), round(6 * scale * 16), START, -1, cv2.LINE_AA, 4)
    _end_marker(figure, points, 13 * scale)
    draw_legend(figure, [("start", START, "dot"), ("end", END, "arrow")], (right, top), scale)

    extent = path.max(axis=0) - path.min(axis=0)
    note = f"extent {extent[0]:.1f} px (x) by {extent[1]:.1f} px (y)"
    draw_text(figure, note, ((left + right) // 2, bottom + round(68 * scale)), 0.48 * scale, INK, anchor="centre")


def _end_marker(figure: ImageArray, points: FloatArray, length: float) -> None:
    """An arrowhead at the last point along the last visible motion, or a ring when the path does not move."""
    tip = points[-1]
    moves = np.linalg.norm(points - tip, axis=1) > 0.5
    if not moves.any():
        cv2.circle(figure, _fixed(tip), round(length * 0.6 * 16), END, max(2, round(length / 6)), cv2.LINE_AA, 4)
        return
    direction = tip - points[np.flatnonzero(moves)[-1]]
    direction /= np.linalg.norm(direction)
    normal = np.array([-direction[1], direction[0]])
    base = tip - length * direction
    triangle = np.stack([tip + 0.25 * length * direction, base + 0.45 * length * normal, base - 0.45 * length * normal])
    cv2.fillPoly(figure, [np.round(triangle * 16).astype(np.int32)], END, cv2.LINE_AA, 4)


def _equal_aspect_ranges(path: FloatArray, width_px: int, height_px: int) -> tuple[tuple[float, float], ...]:
    """Data ranges holding `path` and the origin, padded, with the same pixels per unit on both axes."""
    x_low, x_high = padded_range(np.append(path[:, 0], 0.0), pad=0.12, minimum_span=2.0)
    y_low, y_high = padded_range(np.append(path[:, 1], 0.0), pad=0.12, minimum_span=2.0)
    units_per_px = max((x_high - x_low) / width_px, (y_high - y_low) / height_px)
    x_mid, y_mid = (x_low + x_high) / 2, (y_low + y_high) / 2
    half_w, half_h = units_per_px * width_px / 2, units_per_px * height_px / 2
    return (x_mid - half_w, x_mid + half_w), (y_mid - half_h, y_mid + half_h)


def _fixed(point: FloatArray) -> tuple[int, int]:
    """A float point as OpenCV 4-bit fixed point (for `shift=4`), for sub-pixel antialiased drawing."""
    return round(float(point[0]) * 16), round(float(point[1]) * 16)


# --- side by side ------------------------------------------------------------------------------------------------


def side_by_side(panels: Sequence[tuple[ImageArray, str]]) -> ImageArray:
    """Same-sized uint8 BGR images in a row, white gaps between, each labelled along its top (white text on a
    darkened band, scaled to its width)."""
    labelled = []
    for image, text in panels:
        canvas = image.copy()
        scale = float(np.clip(canvas.shape[1] / 700, 0.25, 0.8))
        thickness = 1 if scale < 0.5 else 2
        (_, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        band = canvas[: text_h + baseline + 4]
        band[:] = (0.4 * band.astype(np.float32) + 0.6 * 20).astype(np.uint8)
        cv2.putText(
            canvas, text, (2, text_h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA
        )
        labelled.append(canvas)
    first = labelled[0]
    gap = np.full((first.shape[0], max(2, first.shape[1] // 64), 3), 255, np.uint8)
    row = [labelled[0]]
    for canvas in labelled[1:]:
        row += [gap, canvas]
    return np.hstack(row)
