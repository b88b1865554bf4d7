"""What a rolling shutter costs gyroscope deblurring, and what restoring in bands gives back: the README table in
"Known camera motion".

    python -m experiments.rolling_shutter --engine bundles/demo --pairs pairs/heldout [--out DIR] [--limit N]

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
from runtime import metrics
from runtime.camera import intrinsics
from runtime.deblurrer import Deblurrer
from runtime.evaluate import Pair
from runtime.media import read_image
from runtime.motion import GyroLog, RowMotion, exposure_motion, gyro_trajectory
from runtime.tiling import tiles

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


def gains(deblurrer: Deblurrer, sharp: np.ndarray, focal_length: float, seed: int) -> dict[str, dict[str, float]]:
    """Per readout time: the PSNR gain restoring with it and without it."""
    height, width = sharp.shape[:2]
    log = hand_shake(seed, height, width, focal_length)
    camera = intrinsics(height, width, focal_length)
    figures = {}
    for readout in READOUTS_S:
        motion = exposure_motion(log, START_S, EXPOSURE_S, readout)
        rows = motion if isinstance(motion, RowMotion) else _every_row(motion)
        blurry = deblurrer.reblur(sharp, RowMotion(rows.trajectory_at, SIMULATION_BANDS), camera)
        noise = np.random.default_rng(seed).normal(0, 0.01, blurry.shape)
        blurry = (np.round(np.clip(blurry + noise, 0, 1) * 255) / 255).astype(np.float32)
        middle_row = START_S + readout / 2
        baseline = metrics.psnr(blurry, sharp)

        def gain(trajectory: np.ndarray | RowMotion, blurry: np.ndarray = blurry, baseline: float = baseline) -> float:
            restored = deblurrer.restore(blurry, focal_length, trajectory=trajectory, refine=False).restored
            return metrics.psnr(np.clip(restored, 0, 1), sharp) - baseline

        figures[f"{1000 * readout:g} ms"] = {
            "with_readout_db": gain(motion),
            "without_readout_db": gain(gyro_trajectory(log, middle_row, middle_row + EXPOSURE_S)),
            "bands": float(len(tiles(height, width, max(height, width), 0, rows.bands))),
        }
    return figures


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
    """Means over the pairs, one row per readout time."""
    readouts = list(next(iter(table.values())))
    lines = [
        f"Mean PSNR gain over {len(table)} pairs; exposure {1000 * EXPOSURE_S:.1f} ms, blurred in "
        f"{SIMULATION_BANDS} bands:",
        "",
        "| readout time | restored with it (bands of rows) | without it (the middle row's exposure) |",
        "|---|---:|---:|",
    ]
    for readout in readouts:
        rows = [pair[readout] for pair in table.values()]
        with_it = float(np.mean([row["with_readout_db"] for row in rows]))
        without = float(np.mean([row["without_readout_db"] for row in rows]))
        lines.append(f"| {readout} | {with_it:+.2f} dB ({rows[0]['bands']:.0f}) | {without:+.2f} dB |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return experiment_main(argv, "rolling_shutter", __doc__.splitlines()[0], run, markdown)


if __name__ == "__main__":
    sys.exit(main())
