"""Pixel values between the graphs' float32 in [0, 1] and the 8- or 16-bit integers images and frames hold."""

from __future__ import annotations

import numpy as np


def quantize(values: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Floats in [0, 1] (clipped) rounded to 8- or 16-bit integers."""
    scale = 65535.0 if bit_depth == 16 else 255.0
    rounded = np.clip(values * scale + 0.5, 0, scale)
    return rounded.astype(np.uint16) if bit_depth == 16 else rounded.astype(np.uint8)
