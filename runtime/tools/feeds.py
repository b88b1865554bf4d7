"""Deterministic synthetic inputs for measurements: a smooth image, a small camera shake, and the feeds they make
for each bundle graph and for one blur-operator call."""

from __future__ import annotations

import numpy as np

from runtime.core import camera as camera_model
from runtime.core.bundle import Bundle

#: Amplitude of the synthetic trajectory, radians.
TRAJECTORY_RAD = 0.01


def synthetic_image(height: int, width: int) -> np.ndarray:
    """A deterministic smooth HxWx3 float32 RGB image in [0, 1]: crossed waves and a gradient, like a photo."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    y /= max(height - 1, 1)
    x /= max(width - 1, 1)
    channels = [
        0.5 + 0.3 * np.sin(2 * np.pi * (1.5 * x + 0.7 * y) + phase) + 0.15 * np.cos(2 * np.pi * 3.1 * y * x + phase)
        for phase in (0.0, 1.3, 2.6)
    ]
    return np.clip(np.dstack(channels), 0, 1).astype(np.float32)


def synthetic_trajectory(n_positions: int, amplitude: float = TRAJECTORY_RAD) -> np.ndarray:
    """A small smooth camera-shake path `(P, 3)` float32 radians (pitch, yaw, roll) within +-`amplitude`."""
    t = np.linspace(-1.0, 1.0, n_positions)
    return (amplitude * np.stack([t, np.sin(np.pi * t), 0.3 * t * t], axis=1)).astype(np.float32)


def graph_feeds(bundle: Bundle, height: int, width: int) -> dict[str, dict[str, np.ndarray]]:
    """The inputs of each bundle graph at one size: synthetic image, default intrinsics, small trajectory, sigma."""
    return image_feeds(bundle, synthetic_image(height, width), synthetic_trajectory(bundle.n_positions))


def image_feeds(bundle: Bundle, image: np.ndarray, trajectory: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """The inputs of each bundle graph for an HxWx3 float32 RGB image and a `(P, 3)` trajectory: the image as
    every image input, the default intrinsics of its size, the bundle's sigma and an all-ones refine mask."""
    height, width = image.shape[:2]
    batch = np.ascontiguousarray(image.transpose(2, 0, 1)[None])
    camera = camera_model.intrinsics(height, width)[None].astype(np.float32)
    trajectory = trajectory[None]
    return {
        "trajectory": {"image": batch, "focal_length": camera[:, 0, 0].copy()},
        "restoration": {
            "blurry": batch,
            "trajectory": trajectory,
            "intrinsics": camera,
            "sigma": np.array([bundle.default_sigma], np.float32),
        },
        "sequence": {"sharp": batch, "trajectory": trajectory, "intrinsics": camera},
        "refine": {
            "blurry": batch,
            "latent": batch,
            "trajectory": trajectory,
            "intrinsics": camera,
            "mask": np.ones((1, 1, height, width), np.float32),
        },
    }


def warp_feed(height: int, width: int, n_positions: int) -> dict[str, np.ndarray]:
    """One blur-operator call's inputs: the synthetic image and a grid of where the synthetic trajectory's poses
    carry each pixel, clipped into the image (the graphs' grids hold in-range positions too)."""
    rows, columns = np.mgrid[0:height, 0:width]
    pixels = np.stack([columns.ravel(), rows.ravel()], axis=1)
    camera = camera_model.intrinsics(height, width)
    paths = camera_model.point_paths(synthetic_trajectory(n_positions), camera, pixels)  # (P, H*W, 2)
    x = np.clip(paths[..., 0], 0, width - 1) * (2 / (width - 1)) - 1
    y = np.clip(paths[..., 1], 0, height - 1) * (2 / (height - 1)) - 1
    grid = np.stack([x, y], axis=-1).reshape(1, n_positions * height, width, 2).astype(np.float32)
    return {"image": np.ascontiguousarray(synthetic_image(height, width).transpose(2, 0, 1)[None]), "grid": grid}
