"""The measurement tools' charts: latencies (`runtime.tools.benchmark`), restoration against trajectory error
(`runtime.tools.sensitivity`), and a gyroscope log's clock offset and drift against a video (`runtime.tools.sync`).

Pure functions returning uint8 BGR images, drawn with the pictures' primitives (`runtime.io.drawing`).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from runtime.io.drawing import (
    INK,
    PITCH_YAW_ROLL,
    START,
    Axes,
    ImageArray,
    draw_frame,
    draw_legend,
    draw_polyline,
    draw_text,
    nice_ticks,
    padded_range,
)

# --- benchmark charts --------------------------------------------------------------------------------------------


def latency_chart(bars: Sequence[tuple[str, float]], title: str = "end-to-end latency (median), ms") -> ImageArray:
    """A horizontal bar chart of `(label, seconds)` pairs; each bar but the fastest says how many times slower."""
    if not bars:
        raise ValueError("no latencies to draw")
    row_h, label_w, bar_w, margin = 30, 360, 460, 12
    height = margin * 3 + 24 + row_h * len(bars)
    figure = np.full((height, label_w + bar_w + 3 * margin + 120, 3), 255, np.uint8)
    draw_text(figure, title, (margin, margin + 16), 0.55, INK, bold=True)
    longest = max(seconds for _, seconds in bars)
    fastest = min(seconds for _, seconds in bars)
    for index, (label, seconds) in enumerate(bars):
        top = margin * 2 + 24 + index * row_h
        draw_text(figure, label, (label_w, top + 20), 0.45, INK, anchor="right")
        length = max(1, round(bar_w * seconds / longest))
        colour = START if seconds == fastest else PITCH_YAW_ROLL[0][1]
        cv2.rectangle(figure, (label_w + margin, top + 4), (label_w + margin + length, top + row_h - 6), colour, -1)
        note = f"{seconds * 1e3:.0f} ms" + ("" if seconds == fastest else f" ({seconds / fastest:.1f}x)")
        draw_text(figure, note, (label_w + 2 * margin + length, top + 20), 0.45, INK)
    return figure


# --- sensitivity chart -------------------------------------------------------------------------------------------


def sensitivity_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float, str]]]], title: str, size: tuple[int, int] = (520, 820)
) -> ImageArray:
    """Restored PSNR gain (dB) against trajectory error (px): one line per `(name, [(error, gain, label), ...])`
    joining its points in the given order, each point labelled, with the zero-gain line (no better than the blurry
    input) drawn dark."""
    points = [(error, gain) for _, line in series for error, gain, _ in line]
    if not points:
        raise ValueError("no points to draw")
    height, width = size
    scale = min(height / 520, width / 820)
    figure = np.full((height, width, 3), 255, np.uint8)
    errors, gains = np.array(points).T
    x_range = (0.0, padded_range(np.append(errors, 0.0), pad=0.08, minimum_span=1.0)[1])
    y_range = padded_range(np.append(gains, 0.0), pad=0.12, minimum_span=1.0)
    axes = Axes(
        round(96 * scale), round(60 * scale), width - round(30 * scale), height - round(70 * scale), x_range, y_range
    )
    x_ticks, y_ticks = nice_ticks(*x_range, count=6), nice_ticks(*y_range, count=6)
    draw_frame(figure, axes, x_ticks, y_ticks, "trajectory error (px)", "PSNR gain over blurry (dB)", title, scale)
    draw_polyline(figure, axes.to_px(list(x_range), [0.0, 0.0]), INK, max(1, round(scale)))
    colours = [colour for _, colour in PITCH_YAW_ROLL]
    for (_, line), colour in zip(series, colours, strict=False):
        pixels = axes.to_px([error for error, _, _ in line], [gain for _, gain, _ in line])
        draw_polyline(figure, pixels, colour, max(2, round(2 * scale)))
        for (x, y), (_, _, label) in zip(pixels, line, strict=True):
            cv2.circle(figure, (round(x), round(y)), round(4 * scale), colour, -1, cv2.LINE_AA)
            draw_text(figure, label, (round(x) + round(6 * scale), round(y) - round(6 * scale)), 0.38 * scale, colour)
    draw_legend(
        figure,
        [(name, colour, "line") for (name, _), colour in zip(series, colours, strict=False)],
        (axes.right, axes.top),
        scale,
    )
    return figure


# --- gyroscope sync chart ----------------------------------------------------------------------------------------


def sync_chart(
    offsets_s: npt.ArrayLike, mismatches_rad: npt.ArrayLike, best_s: float, size: tuple[int, int] = (420, 760)
) -> ImageArray:
    """How well a video's frame-to-frame rotations match a gyroscope log's at each clock offset searched (mean
    angle, mrad, against the offset, ms), the best offset marked; offsets the log cannot cover are left out."""
    offsets, mismatches = np.asarray(offsets_s, np.float64) * 1000, np.asarray(mismatches_rad, np.float64) * 1000
    shown = np.isfinite(mismatches)
    if not shown.any():
        raise ValueError("no finite mismatch to draw")
    offsets, mismatches = offsets[shown], mismatches[shown]
    x_range = padded_range(offsets, pad=0.02, minimum_span=1.0)
    y_range = (0.0, padded_range(mismatches, pad=0.08, minimum_span=0.1)[1])
    figure, axes, scale = _gyroscope_canvas(size, x_range, y_range)
    x_ticks, y_ticks = nice_ticks(*x_range, count=7), nice_ticks(*y_range, count=5)
    title = f"gyroscope vs video: best offset {best_s * 1000:+.1f} ms"
    draw_frame(figure, axes, x_ticks, y_ticks, "offset (ms)", "rotation mismatch (mrad)", title, scale)
    draw_polyline(figure, axes.to_px(offsets, mismatches), PITCH_YAW_ROLL[0][1], max(2, round(2 * scale)))
    draw_polyline(figure, axes.to_px([best_s * 1000] * 2, list(y_range)), START, max(1, round(scale)))
    return figure


def drift_chart(
    window_times_s: npt.ArrayLike,
    window_offsets_s: npt.ArrayLike,
    offset_s: float,
    rate: float,
    size: tuple[int, int] = (420, 760),
) -> ImageArray:
    """The offset found in each window of a video (ms, dots) against the video time (s), and the line fitted
    through them (`offset_s + rate * t`), titled with the drift in ppm."""
    times, offsets = np.asarray(window_times_s, np.float64), np.asarray(window_offsets_s, np.float64) * 1000
    x_range = (0.0, padded_range(times, pad=0.08, minimum_span=1.0)[1])
    line = (offset_s * 1000, (offset_s + rate * x_range[1]) * 1000)
    y_range = padded_range(np.concatenate([offsets, line]), pad=0.15, minimum_span=0.5)
    figure, axes, scale = _gyroscope_canvas(size, x_range, y_range)
    x_ticks, y_ticks = nice_ticks(*x_range, count=7), nice_ticks(*y_range, count=5)
    title = f"gyroscope vs video: clock drift {rate * 1e6:+.0f} ppm"
    draw_frame(figure, axes, x_ticks, y_ticks, "video time (s)", "offset (ms)", title, scale)
    draw_polyline(figure, axes.to_px(list(x_range), list(line)), PITCH_YAW_ROLL[0][1], max(2, round(2 * scale)))
    for x, y in axes.to_px(times, offsets):
        cv2.circle(figure, (round(x), round(y)), round(5 * scale), START, -1, cv2.LINE_AA)
    return figure


def _gyroscope_canvas(
    size: tuple[int, int], x_range: tuple[float, float], y_range: tuple[float, float]
) -> tuple[ImageArray, Axes, float]:
    """A white figure of `size` (H, W), its plot area over the ranges, and the scale of its text and lines (1 at
    the gyroscope charts' default 420x760)."""
    height, width = size
    scale = min(height / 420, width / 760)
    figure = np.full((height, width, 3), 255, np.uint8)
    axes = Axes(
        round(96 * scale), round(60 * scale), width - round(30 * scale), height - round(70 * scale), x_range, y_range
    )
    return figure, axes, scale
