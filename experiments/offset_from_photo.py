"""Can one photo tell a gyroscope log's clock offset? The finding in `docs/known-motion.md`.

    python -m experiments.offset_from_photo --engine runtime/bundles/demo --pairs pairs/heldout [--out DIR] [--limit N]

Each pair's true trajectory becomes an exact gyroscope log (`experiments.gyro_errors`), so the true offset is 0.
Offsets from -12 to +12 ms in 1 ms steps are then judged two ways from the blurry photo alone: how close the
log's trajectory at that offset comes to the trajectory net's estimate, and how small the reblur error is when
the photo is restored with it (the restored image blurred again by it, against the photo). Reported: how often
each finds the true offset within 2 ms. Last, trajectory refinement (`--refine 30 --refine-scales 0.5,1
--refine-rerun`) starts from the log's trajectory 2 and 5 ms off: does it come back towards the truth?
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from experiments.command import experiment_main, over_pairs
from experiments.gyro_errors import EXPOSURE_S, GyroError, gyro_log
from runtime.core.camera import intrinsics
from runtime.core.deblurrer import Deblurrer
from runtime.core.motion import gyro_trajectory
from runtime.core.refine import RefineSettings
from runtime.io.media import read_image
from runtime.tools import metrics
from runtime.tools.pairs import Pair

OFFSETS_S = np.round(np.arange(-0.012, 0.0121, 0.001), 4)
#: An offset found this close to the truth counts as found.
FOUND_WITHIN_S = 0.002
REFINE_FROM_S = (0.002, 0.005)
SETTINGS = RefineSettings(steps=30, scales=(0.5, 1.0), rerun=True)


def pair_figures(deblurrer: Deblurrer, pair: Pair, seed: int) -> dict[str, Any]:
    """The offsets each criterion picks (s), and refinement from the offsets in `REFINE_FROM_S`."""
    blurry, sharp = read_image(pair.blurry).rgb, read_image(pair.sharp).rgb
    height, width = blurry.shape[:2]
    focal = pair.focal_length
    camera = intrinsics(height, width, focal)
    log = gyro_log(pair.trajectory, GyroError(), np.random.default_rng(seed))
    estimate, _ = deblurrer.estimate_trajectory(blurry, focal)

    def at(offset: float) -> np.ndarray:
        return gyro_trajectory(log, offset, offset + EXPOSURE_S, len(pair.trajectory)).astype(np.float32)

    to_estimate, reblur_error = [], []
    for offset in OFFSETS_S:
        trajectory = at(float(offset))
        to_estimate.append(metrics.trajectory_error(estimate, trajectory, height, width, focal))
        restored = np.clip(deblurrer.restore(blurry, focal, trajectory=trajectory, refine=False).restored, 0, 1)
        reblur_error.append(float(np.mean((deblurrer.reblur(restored, trajectory, camera) - blurry) ** 2)))
    figures: dict[str, Any] = {
        "closest_to_estimate_s": float(OFFSETS_S[int(np.argmin(to_estimate))]),
        "least_reblur_error_s": float(OFFSETS_S[int(np.argmin(reblur_error))]),
    }
    baseline = metrics.psnr(blurry, sharp)
    for offset in REFINE_FROM_S:
        plain = deblurrer.restore(blurry, focal, trajectory=at(offset), refine=False)
        refined = deblurrer.refine_result(blurry, plain)
        figures[f"refined from {1000 * offset:g} ms"] = {
            "error_before_px": metrics.trajectory_error(plain.trajectory, pair.trajectory, height, width, focal),
            "error_after_px": metrics.trajectory_error(refined.trajectory, pair.trajectory, height, width, focal),
            "gain_before_db": metrics.psnr(np.clip(plain.restored, 0, 1), sharp) - baseline,
            "gain_after_db": metrics.psnr(np.clip(refined.restored, 0, 1), sharp) - baseline,
        }
    return figures


def run(
    bundle: str | Path,
    pairs_dir: str | Path,
    limit: int | None = None,
    threads: int | None = None,
    progress: Callable[[str], object] = print,
) -> dict[str, dict[str, Any]]:
    """Per pair name: the offsets found and the refinements."""

    def describe(figures: dict[str, Any]) -> str:
        closest, least = figures["closest_to_estimate_s"], figures["least_reblur_error_s"]
        return f"closest to the estimate {1000 * closest:+.0f} ms, least reblur error {1000 * least:+.0f} ms"

    return over_pairs(bundle, pairs_dir, pair_figures, describe, limit, threads, progress, refine=SETTINGS)


def markdown(table: dict[str, dict[str, Any]]) -> str:
    """How often each criterion finds the offset, and what refinement does, over the pairs."""
    pairs = list(table.values())
    lines = [f"True offset 0; offsets searched {1000 * OFFSETS_S[0]:+.0f} to {1000 * OFFSETS_S[-1]:+.0f} ms:", ""]
    lines += ["| criterion | found within 2 ms | mean distance (ms) |", "|---|---:|---:|"]
    for key, label in [
        ("closest_to_estimate_s", "closest to the net's estimate"),
        ("least_reblur_error_s", "least reblur error"),
    ]:
        found = [abs(pair[key]) for pair in pairs]
        within = sum(distance <= FOUND_WITHIN_S + 1e-9 for distance in found)
        lines.append(f"| {label} | {within}/{len(pairs)} | {1000 * float(np.mean(found)):.1f} |")
    lines += ["", "| refined from | trajectory error (px) | PSNR gain (dB) |", "|---|---:|---:|"]
    for offset in REFINE_FROM_S:
        rows = [pair[f"refined from {1000 * offset:g} ms"] for pair in pairs]

        def mean(key: str, rows: list[dict[str, float]] = rows) -> float:
            return float(np.mean([row[key] for row in rows]))

        lines.append(
            f"| {1000 * offset:g} ms | {mean('error_before_px'):.2f} -> {mean('error_after_px'):.2f} | "
            f"{mean('gain_before_db'):+.2f} -> {mean('gain_after_db'):+.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return experiment_main(argv, "offset_from_photo", __doc__.splitlines()[0], run, markdown)


if __name__ == "__main__":
    sys.exit(main())
