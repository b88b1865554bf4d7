"""Synthetic training pairs: sharp crops (scikit-image's bundled photos or dead leaves), blurred through our PMBM.

Everything is made offline and is a pure function of `(seed, index)`: `make_batch(seed, index, ...)` returns
the same batch on every machine and after a resume, so training needs no data files and no data-loader state.

Per sample: a sharp crop with a margin (a photo at a random scale, or a dead-leaves image), illumination and
gamma jitter, a hand-shake trajectory (`models.shake`) scaled to a sampled blur in pixels at a sampled focal
length, the PMBM blur of the crop with its margin (so no border effect reaches the kept centre), then a random
flip and quarter turn applied to blurry, sharp and trajectory together, Gaussian noise and 8-bit quantisation.
The kept centre has the default principal point `(C/2, C/2)` of its own size, as the runtime assumes. The flip
and turn move the optical centre by one pixel; the blur this changes moves by under 0.1 px (see the tests).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from models.geometry import intrinsics
from models.losses import reblur
from models.shake import ShakeConfig, flip_trajectory, random_trajectory, rotate_trajectory90

#: scikit-image's bundled sharp photographs used for training (file names in its `data` folder).
#: Left out: clock_motion (a blurry photo), horse and logo (flat binary art), microaneurysms (too small).
TRAIN_IMAGES = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chessboard_RGB.png",
    "coins.png",
    "color.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "page.png",
    "phantom.png",
    "retina.jpg",
    "text.png",
)
#: Held out for evaluation: never used in training.
HELD_OUT_IMAGES = ("chelsea.png", "coffee.png", "rocket.jpg")
#: Never a sharp source: it is a real camera-shake photo.
BLURRY_IMAGES = ("clock_motion.png",)


@dataclass(frozen=True)
class PairConfig:
    """How training pairs are drawn (ranges are uniform)."""

    crop: int = 128
    blur_px: tuple[float, float] = (2.0, 30.0)  # blur extent of the kept crop, pixels
    focal_factor: tuple[float, float] = (0.8, 2.5)  # focal length / crop side
    noise_sigma: tuple[float, float] = (0.0, 0.02)
    dead_leaves: float = 0.35  # share of dead-leaves sources
    image_scale: tuple[float, float] = (0.4, 1.0)  # photo downscale before cropping
    gain: tuple[float, float] = (0.6, 1.15)
    channel_gain: float = 0.1  # per-channel white-balance jitter, +-
    gamma: tuple[float, float] = (0.7, 1.4)
    images: tuple[str, ...] = TRAIN_IMAGES
    shake: ShakeConfig = ShakeConfig()

    @property
    def margin(self) -> int:
        """Border blurred with the crop and cut away: more than the largest displacement."""
        return int(np.ceil(self.blur_px[1])) + 2


class Batch(NamedTuple):
    """A batch of pairs: `blurry`, `sharp` `(B, 3, C, C)` in [0, 1]; `trajectory` `(B, 25, 3)` rad;
    `intrinsics` `(B, 3, 3)`; `sigma` `(B,)` the Gaussian noise level added to `blurry`."""

    blurry: Tensor
    sharp: Tensor
    trajectory: Tensor
    intrinsics: Tensor
    sigma: Tensor


# --- sharp sources ----------------------------------------------------------------------------------------------


def skimage_data_dir() -> Path:
    """scikit-image's bundled data folder (files that ship in its wheel; nothing is downloaded)."""
    import skimage

    return Path(skimage.__file__).parent / "data"


@functools.cache
def load_image(name: str) -> np.ndarray:
    """A bundled scikit-image photo as float32 RGB `(H, W, 3)` in [0, 1] (gray repeated, alpha dropped)."""
    if name in BLURRY_IMAGES:
        raise ValueError(f"{name} is a blurry photo, not a sharp source")
    with Image.open(skimage_data_dir() / name) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    rgb.setflags(write=False)
    return rgb


def dead_leaves(
    rng: np.random.Generator,
    size: int,
    r_min: float = 2.0,
    r_max: float | None = None,
    exponent: float = 3.0,
    max_discs: int = 4000,
) -> np.ndarray:
    """A dead-leaves image `(size, size, 3)` float32: opaque discs with random colours, radii drawn from the
    power law `p(r) ~ r^-exponent` on [r_min, r_max], each occluding the ones drawn after it (front to back)."""
    r_max = size / 3 if r_max is None else r_max
    image = np.zeros((size, size, 3), np.float32)
    empty = np.ones((size, size), bool)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    a, b = r_min ** (1 - exponent), r_max ** (1 - exponent)
    for count in range(1, max_discs + 1):
        radius = float((a + rng.uniform() * (b - a)) ** (1 / (1 - exponent)))  # inverse CDF of the power law
        cx, cy = rng.uniform(-radius, size + radius, 2)
        x0, x1 = max(int(cx - radius), 0), min(int(cx + radius) + 2, size)
        y0, y1 = max(int(cy - radius), 0), min(int(cy + radius) + 2, size)
        if x0 >= x1 or y0 >= y1:
            continue
        inside = (xx[y0:y1, x0:x1] - cx) ** 2 + (yy[y0:y1, x0:x1] - cy) ** 2 <= radius**2
        paint = inside & empty[y0:y1, x0:x1]
        image[y0:y1, x0:x1][paint] = rng.uniform(0.0, 1.0, 3)
        empty[y0:y1, x0:x1] &= ~inside
        if count % 64 == 0 and not empty.any():
            break
    image[empty] = image[~empty].mean(axis=0) if (~empty).any() else 0.5
    return image


def photo_crop(rng: np.random.Generator, name: str, size: int, scale_range: tuple[float, float]) -> np.ndarray:
    """A random `size x size` crop of a bundled photo, downscaled by a random factor first."""
    photo = load_image(name)
    height, width = photo.shape[:2]
    smallest = size / min(height, width)
    if smallest > 1:
        raise ValueError(f"{name} ({width}x{height}) is smaller than a {size}px crop")
    scale = rng.uniform(max(scale_range[0], smallest), max(scale_range[1], smallest))
    side = min(int(round(size / scale)), height, width)
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    region = photo[top : top + side, left : left + side]
    if side == size:
        return np.array(region)
    resized = Image.fromarray(np.round(region * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.float32) / 255.0


def jitter_photometric(rng: np.random.Generator, image: np.ndarray, config: PairConfig) -> np.ndarray:
    """Gamma, global gain and per-channel gain, clipped to [0, 1]."""
    gamma = rng.uniform(*config.gamma)
    gain = rng.uniform(*config.gain) * (1 + rng.uniform(-config.channel_gain, config.channel_gain, 3))
    return np.clip(gain * image**gamma, 0.0, 1.0).astype(np.float32)


# --- image + trajectory together --------------------------------------------------------------------------------


def flip_rotate(
    images: list[np.ndarray], trajectory: np.ndarray, horizontal: bool, quarter_turns: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Flip `(H, W, C)` images left-right (optional), then turn them `quarter_turns` times with `np.rot90`;
    the trajectory is transformed to match (see `models.shake`)."""
    if horizontal:
        images = [image[:, ::-1] for image in images]
        trajectory = flip_trajectory(trajectory, horizontal=True)
    images = [np.ascontiguousarray(np.rot90(image, quarter_turns, axes=(0, 1))) for image in images]
    return images, rotate_trajectory90(trajectory, quarter_turns)


def add_noise_and_quantize(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian noise of std `sigma`, then 8-bit quantisation, as a camera would store it."""
    noisy = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return (np.round(np.clip(noisy, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def blur_images(sharp: np.ndarray, trajectories: np.ndarray, focal_lengths: np.ndarray) -> np.ndarray:
    """PMBM blur of `(B, H, W, 3)` images with `(B, 25, 3)` trajectories, default principal point."""
    batch, height, width, _ = sharp.shape
    images = torch.from_numpy(sharp).permute(0, 3, 1, 2)
    camera = intrinsics(height, width, torch.from_numpy(focal_lengths).float())
    with torch.no_grad():
        blurred = reblur(images, torch.from_numpy(trajectories).float(), camera)
    return blurred.permute(0, 2, 3, 1).numpy()


def make_batch(seed: int, index: int, batch: int, config: PairConfig = PairConfig()) -> Batch:
    """Batch number `index` of the stream `seed`: a pure function of its arguments."""
    rng = np.random.default_rng([seed, index])
    crop, margin = config.crop, config.margin
    padded = crop + 2 * margin
    photos = [name for name in config.images if min(load_image(name).shape[:2]) >= padded]
    sources, trajectories, focals = [], [], []
    for _ in range(batch):
        if rng.uniform() < config.dead_leaves or not photos:
            sharp = dead_leaves(rng, padded)
        else:
            sharp = photo_crop(rng, photos[rng.integers(len(photos))], padded, config.image_scale)
        sources.append(jitter_photometric(rng, sharp, config))
        focal = rng.uniform(*config.focal_factor) * crop
        trajectories.append(random_trajectory(rng, rng.uniform(*config.blur_px), focal, crop, crop, config.shake))
        focals.append(focal)
    sharp_padded = np.stack(sources)
    blurred_padded = blur_images(sharp_padded, np.stack(trajectories), np.asarray(focals))
    keep = slice(margin, margin + crop)
    blurry_out, sharp_out, trajectory_out, sigmas = [], [], [], []
    for sharp, blurred, trajectory in zip(sharp_padded, blurred_padded, trajectories, strict=True):
        (sharp, blurred), trajectory = flip_rotate(
            [sharp[keep, keep], blurred[keep, keep]], trajectory, bool(rng.integers(2)), int(rng.integers(4))
        )
        sigma = rng.uniform(*config.noise_sigma)
        blurry_out.append(add_noise_and_quantize(rng, blurred, sigma))
        sharp_out.append(sharp)
        trajectory_out.append(trajectory)
        sigmas.append(sigma)
    to_tensor = lambda images: torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return Batch(
        blurry=to_tensor(blurry_out),
        sharp=to_tensor(sharp_out),
        trajectory=torch.from_numpy(np.stack(trajectory_out)).float(),
        intrinsics=intrinsics(crop, crop, torch.tensor(focals, dtype=torch.float32)),
        sigma=torch.tensor(sigmas, dtype=torch.float32),
    )
