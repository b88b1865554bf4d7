"""What a gyroscope's errors cost known-motion deblurring: the table in `docs/known-motion.md`.

    python -m experiments.gyro_errors --engine runtime/bundles/demo --pairs pairs/heldout [--out DIR] [--limit N]

Each pair's true trajectory is taken as the camera's path over an exposure of 1/30 s and turned into the log a
gyroscope in the camera would record at 1 kHz: the body-frame rate between consecutive poses, placed at the middle
of their interval and interpolated linearly between (held at the ends, so the camera keeps turning before and
after the exposure). Each error below is added to that log, `runtime.core.motion.gyro_trajectory` integrates it back
over the exposure as the CLI's `--gyro` does, and the bundle restores the pair with the result. Reported per error:
the mean trajectory error (px) and the mean PSNR gain over the blurry image; beside them the trajectory net's
estimate, the blind baseline.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.command import experiment_main, over_pairs
from runtime.core.deblurrer import Deblurrer
from runtime.core.motion import GyroLog, exponential, gyro_trajectory, logarithm
from runtime.io.media import read_image
from runtime.tools import metrics
from runtime.tools.pairs import Pair

EXPOSURE_S = 1 / 30
RATE_HZ = 1000.0
#: The log runs this long before and after the exposure, so that a shifted window still lies inside it.
MARGIN_S = 0.05
DEGREE = math.pi / 180


@dataclass(frozen=True)
class GyroError:
    """A gyroscope's errors: a constant bias (deg/s, in a random direction), white noise (deg/s per sqrt(Hz)),
    and an offset (s) between the log's clock and the exposure's (the window integrated is shifted by it)."""

    bias_deg_s: float = 0.0
    noise_deg_s_rt_hz: float = 0.0
    offset_s: float = 0.0


ERRORS = {
    "exact": GyroError(),
    "bias 0.5 deg/s": GyroError(bias_deg_s=0.5),
    "bias 2 deg/s": GyroError(bias_deg_s=2.0),
    "bias 5 deg/s": GyroError(bias_deg_s=5.0),
    "noise 0.01 deg/s/sqrt(Hz)": GyroError(noise_deg_s_rt_hz=0.01),
    "noise 0.1 deg/s/sqrt(Hz)": GyroError(noise_deg_s_rt_hz=0.1),
    "clock offset 2 ms": GyroError(offset_s=0.002),
    "clock offset 5 ms": GyroError(offset_s=0.005),
    "clock offset 10 ms": GyroError(offset_s=0.010),
}


def camera_rates(trajectory: np.ndarray, exposure_s: float = EXPOSURE_S) -> tuple[np.ndarray, np.ndarray]:
    """The body-frame angular velocity of the camera that takes the poses `(P, 3)` evenly over the exposure:
    `(times_s, rates)` at the middle of each interval between poses. The camera's orientation at pose i is the
    transpose of the pose's rotation (`runtime.core.motion`)."""
    orientations = [exponential(pose).T for pose in np.asarray(trajectory, dtype=np.float64)]
    step = exposure_s / (len(orientations) - 1)
    rates = np.stack([logarithm(a.T @ b) / step for a, b in zip(orientations, orientations[1:], strict=False)])
    times = step * (np.arange(len(rates)) + 0.5)
    return times, rates


def gyro_log(
    trajectory: np.ndarray, error: GyroError, rng: np.random.Generator, exposure_s: float = EXPOSURE_S
) -> GyroLog:
    """What a gyroscope with `error` records at `RATE_HZ` while the camera takes the poses over the exposure."""
    mid_times, mid_rates = camera_rates(trajectory, exposure_s)
    times = np.arange(-MARGIN_S, exposure_s + MARGIN_S, 1 / RATE_HZ)
    rates = np.stack([np.interp(times, mid_times, mid_rates[:, axis]) for axis in range(3)], axis=1)
    direction = rng.standard_normal(3)
    rates += error.bias_deg_s * DEGREE * direction / np.linalg.norm(direction)
    rates += error.noise_deg_s_rt_hz * DEGREE * math.sqrt(RATE_HZ) * rng.standard_normal(rates.shape)
    return GyroLog(times, rates)


def pair_figures(deblurrer: Deblurrer, pair: Pair, seed: int) -> dict[str, dict[str, float]]:
    """Per gyro error (and the trajectory net's estimate): the trajectory error (px) and PSNR gain (dB)."""
    blurry, sharp = read_image(pair.blurry).rgb, read_image(pair.sharp).rgb
    height, width = blurry.shape[:2]
    baseline = metrics.psnr(blurry, sharp)

    def figures(trajectory: np.ndarray | None) -> tuple[np.ndarray, dict[str, float]]:
        result = deblurrer.restore(blurry, pair.focal_length, trajectory=trajectory, refine=False)
        error = metrics.trajectory_error(result.trajectory, pair.trajectory, height, width, pair.focal_length)
        gain = metrics.psnr(np.clip(result.restored, 0, 1), sharp) - baseline
        return result.trajectory, {"trajectory_error_px": error, "psnr_gain_db": gain}

    table = {"trajectory net (blind)": figures(None)[1]}
    for index, (name, error) in enumerate(ERRORS.items()):
        log = gyro_log(pair.trajectory, error, np.random.default_rng([seed, index]))
        poses = gyro_trajectory(log, error.offset_s, EXPOSURE_S + error.offset_s, len(pair.trajectory))
        table[name] = figures(poses.astype(np.float32))[1]
    return table


def run(
    bundle: str | Path,
    pairs_dir: str | Path,
    limit: int | None = None,
    threads: int | None = None,
    progress: Callable[[str], object] = print,
) -> dict[str, dict[str, dict[str, float]]]:
    """Per pair name, per gyro error: the trajectory error and the PSNR gain."""

    def describe(figures: dict[str, dict[str, float]]) -> str:
        exact = figures["exact"]
        return f"exact gyroscope {exact['trajectory_error_px']:.3f} px, {exact['psnr_gain_db']:+.2f} dB"

    return over_pairs(bundle, pairs_dir, pair_figures, describe, limit, threads, progress)


def markdown(table: dict[str, dict[str, dict[str, float]]]) -> str:
    """Means over the pairs, one row per gyro error."""
    names = list(next(iter(table.values())))
    lines = [
        f"Means over {len(table)} pairs; exposure {1000 * EXPOSURE_S:.1f} ms, gyroscope at {RATE_HZ:.0f} Hz:",
        "",
        "| trajectory from | trajectory error (px) | PSNR gain (dB) |",
        "|---|---:|---:|",
    ]
    for name in names:
        error = float(np.mean([pair[name]["trajectory_error_px"] for pair in table.values()]))
        gain = float(np.mean([pair[name]["psnr_gain_db"] for pair in table.values()]))
        lines.append(f"| {name} | {error:.3f} | {gain:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return experiment_main(argv, "gyro_errors", __doc__.splitlines()[0], run, markdown)


if __name__ == "__main__":
    sys.exit(main())
