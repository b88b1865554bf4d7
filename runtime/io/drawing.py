"""The drawing primitives of the pictures and the tools' charts: plot axes, round ticks, frames, legends, text.

Drawn with numpy and OpenCV only (no matplotlib), so the runtime stays light. Figures are uint8 BGR images
(OpenCV's convention); coordinates are figure pixels, or data coordinates mapped through an `Axes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ImageArray = npt.NDArray[np.uint8]
Colour = tuple[int, int, int]

FONT = cv2.FONT_HERSHEY_SIMPLEX
PITCH_YAW_ROLL: tuple[tuple[str, Colour], ...] = (
    ("pitch", (178, 114, 0)),  # blue     (colour-blind safe palette, BGR)
    ("yaw", (0, 94, 213)),  # vermillion
    ("roll", (115, 158, 0)),  # green
)
INK: Colour = (40, 40, 40)
GRID: Colour = (225, 225, 225)
START: Colour = (60, 160, 0)


@dataclass
class Axes:
    """A plotting rectangle (figure pixels) and the data ranges it shows; `y_down` for image-style axes."""

    left: int
    top: int
    right: int
    bottom: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    y_down: bool = False

    def to_px(self, x: npt.ArrayLike, y: npt.ArrayLike) -> FloatArray:
        """Data coordinates -> figure pixels `(N, 2)`."""
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        px = self.left + (np.asarray(x, dtype=np.float64) - x0) / (x1 - x0) * (self.right - self.left)
        fraction = (np.asarray(y, dtype=np.float64) - y0) / (y1 - y0)
        py = (
            self.top + fraction * (self.bottom - self.top)
            if self.y_down
            else self.bottom - fraction * (self.bottom - self.top)
        )
        return np.stack(np.broadcast_arrays(px, py), axis=-1).reshape(-1, 2)


def padded_range(values: FloatArray, pad: float, minimum_span: float) -> tuple[float, float]:
    """`[min, max]` of `values` widened by `pad` of its span; a (near) constant gets a span of `minimum_span`."""
    low, high = float(np.min(values)), float(np.max(values))
    span = high - low
    if span < minimum_span:
        middle = (low + high) / 2
        return middle - minimum_span / 2, middle + minimum_span / 2
    return low - pad * span, high + pad * span


def nice_ticks(low: float, high: float, count: int, integer: bool = False) -> list[float]:
    """About `count` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) within `[low, high]`."""
    raw = (high - low) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(power * m for m in (1, 2, 2.5, 5, 10) if power * m >= raw)
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(low / step - 1e-9) * step
    return [float(v) for v in np.arange(first, high + step * 1e-9, step)]


def _tick_label(value: float, ticks: Sequence[float]) -> str:
    """A tick value with just enough decimals to tell the ticks apart, and no '-0'."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = 0
    while decimals < 6 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def draw_frame(
    figure: ImageArray,
    axes: Axes,
    x_ticks: Sequence[float],
    y_ticks: Sequence[float],
    x_label: str,
    y_label: str,
    title: str,
    scale: float,
) -> None:
    """Grid lines, the axes box, tick marks and labels, axis labels and a panel title."""
    tick_len, font = max(3, round(5 * scale)), 0.42 * scale
    for value in x_ticks:
        ((px, _),) = axes.to_px([value], [axes.y_range[0]])
        x = round(px)
        cv2.line(figure, (x, axes.top), (x, axes.bottom), GRID, 1)
        cv2.line(figure, (x, axes.bottom), (x, axes.bottom + tick_len), INK, 1)
        label = _tick_label(value, x_ticks)
        draw_text(figure, label, (x, axes.bottom + tick_len + round(16 * scale)), font, INK, "centre")
    for value in y_ticks:
        ((_, py),) = axes.to_px([axes.x_range[0]], [value])
        y = round(py)
        cv2.line(figure, (axes.left, y), (axes.right, y), GRID, 1)
        cv2.line(figure, (axes.left - tick_len, y), (axes.left, y), INK, 1)
        label = _tick_label(value, y_ticks)
        draw_text(figure, label, (axes.left - tick_len - 4, y + round(5 * scale)), font, INK, "right")
    cv2.rectangle(figure, (axes.left, axes.top), (axes.right, axes.bottom), INK, 1)
    middle_x, middle_y = (axes.left + axes.right) // 2, (axes.top + axes.bottom) // 2
    draw_text(figure, x_label, (middle_x, axes.bottom + round(40 * scale)), 0.48 * scale, INK, "centre")
    _vertical_text(figure, y_label, (axes.left - round(62 * scale), middle_y), 0.48 * scale)
    draw_text(figure, title, (middle_x, axes.top - round(14 * scale)), 0.55 * scale, INK, "centre", bold=True)


def draw_legend(
    figure: ImageArray, entries: Sequence[tuple[str, Colour, str]], corner: tuple[int, int], scale: float
) -> None:
    """A boxed legend in the top-right corner of a plot; each entry is (name, colour, 'line' | 'dot' | 'arrow')."""
    font, thickness = 0.45 * scale, 1
    row_h, sample_w, pad = round(20 * scale), round(26 * scale), round(8 * scale)
    text_w = max(cv2.getTextSize(name, FONT, font, thickness)[0][0] for name, _, _ in entries)
    box_w, box_h = pad * 3 + sample_w + text_w, pad * 2 + row_h * len(entries) - round(4 * scale)
    right, top = corner[0] - round(6 * scale), corner[1] + round(6 * scale)
    left = right - box_w
    cv2.rectangle(figure, (left, top), (right, top + box_h), (255, 255, 255), -1)
    cv2.rectangle(figure, (left, top), (right, top + box_h), (170, 170, 170), 1)
    for row, (name, colour, kind) in enumerate(entries):
        y = top + pad + row * row_h + round(7 * scale)
        x0, x1 = left + pad, left + pad + sample_w
        if kind == "line":
            cv2.line(figure, (x0, y), (x1, y), colour, max(2, round(2 * scale)), cv2.LINE_AA)
        elif kind == "dot":
            cv2.circle(figure, ((x0 + x1) // 2, y), round(5 * scale), colour, -1, cv2.LINE_AA)
        else:
            size = 11 * scale
            tip = np.array([(x0 + x1) / 2 + size / 2, y])
            triangle = np.stack([tip, tip + [-size, 0.45 * size], tip + [-size, -0.45 * size]])
            cv2.fillPoly(figure, [np.round(triangle * 16).astype(np.int32)], colour, cv2.LINE_AA, 4)
        draw_text(figure, name, (x1 + pad, y + round(5 * scale)), font, INK)


def draw_polyline(figure: ImageArray, points: FloatArray, colour: Colour, thickness: int) -> None:
    """An antialiased open polyline through float pixel points."""
    fixed = np.round(np.asarray(points) * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(figure, [fixed], False, colour, thickness, cv2.LINE_AA, 4)


def draw_text(
    figure: ImageArray,
    text: str,
    origin: tuple[int, int],
    font_scale: float,
    colour: Colour,
    anchor: str = "left",
    bold: bool = False,
) -> None:
    """Antialiased text whose baseline starts at (anchor 'left'), is centred on, or ends at ('right') `origin`."""
    thickness = max(1, round(font_scale * (2.6 if bold else 1.9)))
    text_w = cv2.getTextSize(text, FONT, font_scale, thickness)[0][0]
    x = origin[0] - {"left": 0, "centre": text_w // 2, "right": text_w}[anchor]
    cv2.putText(figure, text, (x, origin[1]), FONT, font_scale, colour, thickness, cv2.LINE_AA)


def _vertical_text(figure: ImageArray, text: str, centre: tuple[int, int], font_scale: float) -> None:
    """Dark text reading bottom to top, centred on `centre` (drawn upright, rotated, then darkened in)."""
    thickness = max(1, round(font_scale * 1.9))
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
    upright = np.full((text_h + baseline + 4, text_w + 4, 3), 255, np.uint8)
    cv2.putText(upright, text, (2, text_h + 2), FONT, font_scale, INK, thickness, cv2.LINE_AA)
    rotated = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)
    rows, cols = rotated.shape[:2]
    top, left = centre[1] - rows // 2, centre[0] - cols // 2
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + rows, figure.shape[0]), min(left + cols, figure.shape[1])
    if r0 < r1 and c0 < c1:
        region = figure[r0:r1, c0:c1]
        np.minimum(region, rotated[r0 - top : r1 - top, c0 - left : c1 - left], out=region)
