"""The tools' charts: every bar, line and dot drawn, in its colour, and nothing to draw refused."""

import cv2
import numpy as np
import pytest

from runtime.io import drawing
from runtime.tools import charts


def test_a_latency_chart_draws_a_bar_per_configuration():
    chart = charts.latency_chart([("fast", 0.1), ("slow", 0.3)])
    assert chart.dtype == np.uint8 and chart.ndim == 3
    with pytest.raises(ValueError, match="no latencies"):
        charts.latency_chart([])


def test_the_sensitivity_chart_draws_each_line_in_its_colour():
    series = [
        ("towards the truth", [(0.0, 3.0, "b=0"), (1.0, 1.0, "b=0.5"), (2.0, -1.0, "b=1")]),
        ("scaled", [(1.5, 0.5, "s=0.5"), (2.0, -1.0, "s=1")]),
    ]
    figure = charts.sensitivity_chart(series, "title", size=(400, 600))
    assert figure.shape == (400, 600, 3) and figure.dtype == np.uint8
    for (_, colour), count in zip(drawing.PITCH_YAW_ROLL, (3, 2), strict=False):
        assert np.all(figure == colour, axis=-1).sum() > 50 * count
    assert not np.any(np.all(figure == drawing.PITCH_YAW_ROLL[2][1], axis=-1))
    with pytest.raises(ValueError, match="no points"):
        charts.sensitivity_chart([("empty", [])], "title")


def test_the_drift_chart_draws_each_windows_offset_and_the_line():
    times = np.array([2.5, 7.5, 12.5, 17.5])
    figure = charts.drift_chart(times, 0.1537 + 300e-6 * times, 0.1537, 300e-6, size=(420, 760))
    assert figure.shape == (420, 760, 3) and figure.dtype == np.uint8
    assert np.all(figure == drawing.PITCH_YAW_ROLL[0][1], axis=-1).sum() > 500  # the line, across the plot
    dots = np.all(figure == drawing.START, axis=-1).astype(np.uint8)
    count, _, _, centres = cv2.connectedComponentsWithStats(dots)
    assert count - 1 == 4  # one dot a window, rising left to right (the offset grows with the drift)
    ordered = centres[1:][np.argsort(centres[1:, 0])]
    assert np.all(np.diff(ordered[:, 1]) < 0)


def test_the_sync_chart_leaves_out_offsets_the_log_cannot_cover():
    offsets = np.linspace(-0.1, 0.1, 41)
    mismatches = np.abs(offsets) * 0.1 + 0.001
    mismatches[:5] = np.nan
    figure = charts.sync_chart(offsets, mismatches, 0.0, size=(420, 760))
    assert figure.shape == (420, 760, 3) and figure.dtype == np.uint8
    assert np.all(figure == drawing.PITCH_YAW_ROLL[0][1], axis=-1).sum() > 500  # the mismatch curve
    near_start = np.abs(figure.astype(int) - drawing.START).max(axis=-1) < 60
    assert near_start.any(axis=1).sum() > 200  # the best offset's line, top to bottom of the plot
    assert np.array_equal(figure, charts.sync_chart(offsets[5:], mismatches[5:], 0.0, size=(420, 760)))
    with pytest.raises(ValueError, match="no finite mismatch"):
        charts.sync_chart(offsets, np.full(41, np.nan), 0.0)
