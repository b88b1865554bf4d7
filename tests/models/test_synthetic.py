"""Synthetic training pairs: sources, determinism, ranges, and blurry = PMBM(sharp, trajectory)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("skimage")

from models.losses import reblur  # noqa: E402
from models.shake import blur_extent_px  # noqa: E402
from models.synthetic import (  # noqa: E402
    BLURRY_IMAGES,
    HELD_OUT_IMAGES,
    TRAIN_IMAGES,
    PairConfig,
    dead_leaves,
    load_image,
    make_batch,
    skimage_data_dir,
)

SMALL = PairConfig(crop=48)


def test_sources_are_bundled_files_and_the_held_out_and_blurry_ones_are_never_trained_on():
    for name in TRAIN_IMAGES + HELD_OUT_IMAGES:
        assert (skimage_data_dir() / name).is_file(), name
        image = load_image(name)
        assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
        assert 0.0 <= image.min() and image.max() <= 1.0
    assert not set(TRAIN_IMAGES) & set(HELD_OUT_IMAGES)
    assert not set(TRAIN_IMAGES + HELD_OUT_IMAGES) & set(BLURRY_IMAGES)
    with pytest.raises(ValueError, match="blurry"):
        load_image("clock_motion.png")


def test_dead_leaves_are_deterministic_occluding_discs_of_many_colours():
    first = dead_leaves(np.random.default_rng(1), 64)
    assert first.shape == (64, 64, 3) and first.dtype == np.float32
    np.testing.assert_array_equal(first, dead_leaves(np.random.default_rng(1), 64))
    assert not np.array_equal(first, dead_leaves(np.random.default_rng(2), 64))
    colours = np.unique(first.reshape(-1, 3), axis=0)
    assert len(colours) > 20
    # flat regions with sharp edges: most neighbouring pixels are equal, the rest differ clearly
    steps = np.abs(np.diff(first, axis=1)).max(axis=2)
    assert 0.5 < np.mean(steps == 0) < 0.99
    assert np.median(steps[steps > 0]) > 0.1


def test_batches_are_a_pure_function_of_seed_and_index():
    first = make_batch(5, 3, 3, SMALL)
    again = make_batch(5, 3, 3, SMALL)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first.sharp, make_batch(5, 4, 3, SMALL).sharp)
    assert not torch.equal(first.sharp, make_batch(6, 3, 3, SMALL).sharp)


def test_batch_shapes_ranges_noise_and_quantisation():
    batch = make_batch(0, 0, 6, SMALL)
    assert batch.blurry.shape == batch.sharp.shape == (6, 3, 48, 48)
    assert batch.trajectory.shape == (6, 25, 3) and batch.intrinsics.shape == (6, 3, 3) and batch.sigma.shape == (6,)
    assert all(t.dtype == torch.float32 for t in batch)
    assert float(batch.blurry.min()) >= 0 and float(batch.blurry.max()) <= 1
    assert float(batch.sharp.min()) >= 0 and float(batch.sharp.max()) <= 1
    levels = batch.blurry * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)  # stored as 8 bits
    assert float(batch.sigma.min()) >= 0 and float(batch.sigma.max()) <= 0.02
    focal = batch.intrinsics[:, 0, 0] / 48
    assert float(focal.min()) >= 0.8 and float(focal.max()) <= 2.5
    assert torch.all(batch.intrinsics[:, :2, 2] == 24.0)  # the default principal point of the crop
    extent = blur_extent_px(batch.trajectory, batch.intrinsics, 48, 48)  # flips and turns keep the extent
    low, high = PairConfig().blur_px
    assert float(extent.min()) > low - 1e-2 and float(extent.max()) < high + 1e-2
    assert torch.allclose(batch.trajectory.mean(dim=1), torch.zeros(6, 3), atol=1e-6)


def test_the_blurry_image_is_the_pmbm_of_the_sharp_one_with_the_given_trajectory():
    """After crops, flips and turns, the trajectory still explains the blur: the flips and turns were
    applied consistently (a wrong sign on any angle would leave residuals of several gray levels)."""
    noiseless = PairConfig(crop=64, noise_sigma=(0.0, 0.0))
    batch = make_batch(11, 0, 8, noiseless)
    reblurred = reblur(batch.sharp, batch.trajectory, batch.intrinsics)
    inner = (slice(None), slice(None), slice(16, -16), slice(16, -16))
    residual = (reblurred - batch.blurry)[inner].abs()
    assert float(residual.mean()) < 1.5 / 255
    unrelated = reblur(batch.sharp, batch.trajectory.flip(0), batch.intrinsics.flip(0))
    assert float((unrelated - batch.blurry)[inner].abs().mean()) > 3 * float(residual.mean())


def test_held_out_config_draws_only_held_out_photos():
    held_out = PairConfig(crop=48, dead_leaves=0.0, images=HELD_OUT_IMAGES)
    batch = make_batch(1, 0, 2, held_out)
    assert batch.sharp.shape == (2, 3, 48, 48)
