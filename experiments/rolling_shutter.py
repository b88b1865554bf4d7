"""What a rolling shutter costs gyroscope deblurring, and what restoring in bands gives back: the table in
`docs/known-motion.md`.

    python -m experiments.rolling_shutter --engine runtime/bundles/demo --pairs pairs/heldout [--out DIR] [--limit N]

For each pair's sharp image, a made-up hand shake (a gyroscope log of 1-12 Hz sines, seeded by the pair's place)
blurs it as a rolling-shutter camera would: 32 bands of rows, each exposed for 1/30 s from a start that runs
down the image over the readout time; 1% noise, 8 bits. The bundle restores it from the log (as `--gyro` does)
with the readout time (`RowMotion`, bands of at most 2.5 ms) and without it (the middle row's exposure for every
row, what a global-shutter model assumes). Reported: the mean PSNR gain of each per readout time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from experiments.command import experiment_main, over_pairs
from runtime.core.backends import BackendSettings
from runtime.core.bundle import load_bundle
from runtime.core.camera import intrinsics
from runtime.core.deblurrer import Deblurrer, DeblurResult
from runtime.core.motion import GyroLog, RowMotion, exposure_motion, gyro_trajectory
from runtime.io import pictures
from runtime.io.media import read_image, to_file_pixels
from runtime.tools import metrics
from runtime.tools.pairs import Pair, read_pairs

READOUTS_S = (0.0, 0.010, 0.020, 0.030)
EXPOSURE_S = 1 / 30
START_S = 0.05
#: How the blur is made: finer bands than any restoration uses.
SIMULATION_BANDS = 32
#: The shake's blur at the middle row, as the mean displacement of the image's corners and centre (px).
MIDDLE_ROW_BLUR_PX = 3.0


def hand_shake(seed: int, height: int, width: int, focal_length: float) -> GyroLog:
    """A made-up gyroscope log of a hand shake (1 kHz over 0.2 s; roll weaker), scaled so the middle row of the
    slowest readout blurs by `MIDDLE_ROW_BLUR_PX`."""
    times = np.arange(0.0, 0.2, 0.001)
    rng = np.random.default_rng(seed)
    rates = np.zeros((len(times), 3))
    for axis, share in enumerate([1.0, 1.0, 0.4]):
        for _ in range(4):
            phase, frequency = rng.uniform(0, 2 * np.pi), rng.uniform(1, 12)
            rates[:, axis] += share * rng.normal() * np.sin(2 * np.pi * frequency * times + phase)
    start = START_S + max(READOUTS_S) / 2
    middle = gyro_trajectory(GyroLog(times, rates), start, start + EXPOSURE_S)
    return GyroLog(times, rates * MIDDLE_ROW_BLUR_PX / metrics.zero_motion_error(middle, height, width, focal_length))


def _every_row(poses: np.ndarray) -> RowMotion:
    """The same trajectory for every row: a global shutter as a `RowMotion`."""
    return RowMotion(lambda _: poses, bands=1)


def restorations(
    deblurrer: Deblurrer, sharp: np.ndarray, focal_length: float, seed: int, readout_s: float
) -> tuple[np.ndarray, DeblurResult, DeblurResult]:
    """The rolling-shutter blurry image of `sharp` under the seed's shake, restored with the readout time and
    without it."""
    height, width = sharp.shape[:2]
    log = hand_shake(seed, height, width, focal_length)
    motion = exposure_motion(log, START_S, EXPOSURE_S, readout_s)
    rows = motion if isinstance(motion, RowMotion) else _every_row(motion)
    blurry = deblurrer.reblur(
        sharp, RowMotion(rows.trajectory_at, SIMULATION_BANDS), intrinsics(height, width, focal_length)
    )
    noise = np.random.default_rng(seed).normal(0, 0.01, blurry.shape)
    blurry = (np.round(np.clip(blurry + noise, 0, 1) * 255) / 255).astype(np.float32)
    middle_row = START_S + readout_s / 2
    with_readout = deblurrer.restore(blurry, focal_length, trajectory=motion, refine=False)
    global_shutter = gyro_trajectory(log, middle_row, middle_row + EXPOSURE_S)
    return blurry, with_readout, deblurrer.restore(blurry, focal_length, trajectory=global_shutter, refine=False)


def gains(deblurrer: Deblurrer, sharp: np.ndarray, focal_length: float, seed: int) -> dict[str, dict[str, float]]:
    """Per readout time: the PSNR gain and the restoration's time (s), restoring with it and without it, and the
    bands it took."""
    figures = {}
    for readout in READOUTS_S:
        blurry, with_readout, without = restorations(deblurrer, sharp, focal_length, seed, readout)
        baseline = metrics.psnr(blurry, sharp)
        figures[f"{1000 * readout:g} ms"] = {
            "with_readout_db": metrics.psnr(np.clip(with_readout.restored, 0, 1), sharp) - baseline,
            "without_readout_db": metrics.psnr(np.clip(without.restored, 0, 1), sharp) - baseline,
            "bands": float(with_readout.tiles),
            "with_readout_s": with_readout.timings["restoration"],
            "without_readout_s": without.timings["restoration"],
        }
    return figures


def picture(bundle: Path, pairs_dir: Path, readout_s: float = 0.020) -> np.ndarray:
    """The first pair at 20 ms of readout: blurry | restored without the readout time | with it | sharp."""
    loaded = load_bundle(bundle)
    pair = read_pairs(pairs_dir, loaded.n_positions)[0]
    sharp = read_image(pair.sharp).rgb
    with Deblurrer(loaded, BackendSettings("ort-cpu"), log=lambda _: None) as deblurrer:
        blurry, with_result, without_result = restorations(deblurrer, sharp, pair.focal_length, 1, readout_s)
    with_readout, without = np.clip(with_result.restored, 0, 1), np.clip(without_result.restored, 0, 1)
    bands, readout = with_result.tiles, f"{1000 * readout_s:g} ms"
    return pictures.side_by_side(
        [
            (to_file_pixels(blurry), f"rolling shutter, {readout}: {metrics.psnr(blurry, sharp):.1f} dB"),
            (to_file_pixels(without), f"one exposure for all rows: {metrics.psnr(without, sharp):.1f} dB"),
            (to_file_pixels(with_readout), f"{bands} bands of rows: {metrics.psnr(with_readout, sharp):.1f} dB"),
            (to_file_pixels(sharp), "sharp"),
        ]
    )


def run(
    bundle: str | Path,
    pairs_dir: str | Path,
    limit: int | None = None,
    threads: int | None = None,
    progress: Callable[[str], object] = print,
) -> dict[str, dict[str, dict[str, float]]]:
    """Per pair name, per readout time: the PSNR gains with and without the readout time."""

    def measure(deblurrer: Deblurrer, pair: Pair, seed: int) -> dict[str, dict[str, float]]:
        return gains(deblurrer, read_image(pair.sharp).rgb, pair.focal_length, seed)

    def describe(figures: dict[str, dict[str, float]]) -> str:
        both = (
            f"{name} {row['with_readout_db']:+.2f}/{row['without_readout_db']:+.2f}" for name, row in figures.items()
        )
        return "dB with/without the readout time: " + ", ".join(both)

    return over_pairs(bundle, pairs_dir, measure, describe, limit, threads, progress)


def markdown(table: dict[str, dict[str, dict[str, float]]]) -> str:
    """Mean PSNR gains and median restoration times over the pairs, one row per readout time."""
    readouts = list(next(iter(table.values())))
    lines = [
        f"Over {len(table)} pairs; exposure {1000 * EXPOSURE_S:.1f} ms, blurred in {SIMULATION_BANDS} bands:",
        "",
        "| readout time | restored with it (bands of rows) | without it (the middle row's exposure) "
        "| restoration time with / without (median s) |",
        "|---|---:|---:|---:|",
    ]
    for readout in readouts:
        rows = [pair[readout] for pair in table.values()]

        def mean(key: str, rows: list[dict[str, float]] = rows) -> float:
            return float(np.mean([row[key] for row in rows]))

        def median(key: str, rows: list[dict[str, float]] = rows) -> float:
            return float(np.median([row[key] for row in rows]))

        lines.append(
            f"| {readout} | {mean('with_readout_db'):+.2f} dB ({rows[0]['bands']:.0f}) | "
            f"{mean('without_readout_db'):+.2f} dB | "
            f"{median('with_readout_s'):.2f} / {median('without_readout_s'):.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return experiment_main(argv, "rolling_shutter", __doc__.splitlines()[0], run, markdown, picture)


if __name__ == "__main__":
    sys.exit(main())
