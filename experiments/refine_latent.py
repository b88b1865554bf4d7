"""Which latent image lets trajectory refinement find the true trajectory: the table in
`docs/refinement.md` ("When refinement helps").

    python -m experiments.refine_latent --engine runtime/bundles/demo --pairs pairs/heldout [--out DIR] [--limit N]

For each evaluation pair the bundle estimates the trajectory; then the refine graph refines that estimate (30 Adam
steps at half resolution, then 30 at full) against each latent image below, and the refined trajectory's error
(`runtime.tools.metrics.trajectory_error`) is compared with the estimate's:

- the true sharp image, as it is and Gaussian-blurred (sigma 1 and 2 px): latents that owe nothing to a guess;
- the bundle's restoration given the true trajectory, given its estimate (what `--refine` uses), and given half
  its estimate;
- refinement and re-restoration alternated for 3 rounds, starting from the restoration given the estimate.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from experiments.command import experiment_main, over_pairs
from runtime.core import camera as camera_model
from runtime.core.backends import BackendSettings, load_runners
from runtime.core.bundle import load_bundle
from runtime.core.deblurrer import Deblurrer
from runtime.core.refine import RefineSettings, graph_function, refine_trajectory
from runtime.io.media import read_image
from runtime.tools import metrics
from runtime.tools.pairs import Pair

#: 30 Adam steps at half resolution, then 30 at full, as in the held-out refinement of `docs/refinement.md`.
SETTINGS = RefineSettings(steps=30, scales=(0.5, 1.0))
ROUNDS = 3
LATENTS = {
    "sharp": "the true sharp image",
    "sharp_sigma1": "the true sharp image, Gaussian-blurred, sigma 1 px",
    "sharp_sigma2": "the true sharp image, Gaussian-blurred, sigma 2 px",
    "restored_truth": "the restoration given the true trajectory",
    "restored_estimate": "the restoration given the estimate (what `--refine` uses)",
    "restored_half": "the restoration given half the estimate",
    "alternating": f"refinement and re-restoration alternated, {ROUNDS} rounds",
}


def _gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)


Refine = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def refined_errors(deblurrer: Deblurrer, refine: Refine, pair: Pair) -> dict[str, float]:
    """The trajectory error of the estimate (`start`) and of its refinement against each latent, for one pair.
    `refine(blurry, latent, start, camera)` returns the refined trajectory."""
    blurry, sharp = read_image(pair.blurry).rgb, read_image(pair.sharp).rgb
    focal, truth = pair.focal_length, pair.trajectory
    height, width = blurry.shape[:2]
    camera = camera_model.intrinsics(height, width, focal)

    def restored(trajectory: np.ndarray) -> np.ndarray:
        image = deblurrer.restore(blurry, focal, trajectory=trajectory.astype(np.float32), refine=False).restored
        return np.clip(image, 0, 1)

    def error(trajectory: np.ndarray) -> float:
        return metrics.trajectory_error(trajectory, truth, height, width, focal)

    first = deblurrer.restore(blurry, focal, refine=False)
    estimate = np.asarray(first.trajectory, dtype=np.float64)
    latents = {
        "sharp": sharp,
        "sharp_sigma1": _gaussian(sharp, 1.0),
        "sharp_sigma2": _gaussian(sharp, 2.0),
        "restored_truth": restored(truth),
        "restored_estimate": np.clip(first.restored, 0, 1),
        "restored_half": restored(0.5 * estimate),
    }
    errors = {"start": error(estimate)}
    for name, latent in latents.items():
        errors[name] = error(refine(blurry, latent, estimate, camera))
    trajectory, latent = estimate, latents["restored_estimate"]
    for round_index in range(ROUNDS):
        if round_index > 0:
            latent = restored(trajectory)
        trajectory = refine(blurry, latent, trajectory, camera)
    errors["alternating"] = error(trajectory)
    return errors


def run(
    bundle: str | Path,
    pairs_dir: str | Path,
    limit: int | None = None,
    threads: int | None = None,
    progress: Callable[[str], object] = print,
) -> dict[str, dict[str, float]]:
    """Per pair name: the trajectory error (px) of the estimate (`start`) and after refinement against each latent."""
    loaded = load_bundle(bundle)
    cpu = BackendSettings("ort-cpu", threads=threads)
    _, runners = load_runners(loaded, ("refine", "sequence"), cpu, log=lambda _: None)
    run_refine, run_sequence = graph_function(runners["refine"]), graph_function(runners["sequence"])

    def refine(blurry: np.ndarray, latent: np.ndarray, start: np.ndarray, camera: np.ndarray) -> np.ndarray:
        result = refine_trajectory(
            run_refine,
            blurry,
            latent,
            start,
            camera,
            SETTINGS,
            n_positions=loaded.n_positions,
            run_sequence=run_sequence,
        )
        return np.asarray(result.trajectory, dtype=np.float64)

    def describe(errors: dict[str, float]) -> str:
        return ", ".join(f"{name} {value:.2f}" for name, value in errors.items()) + " px"

    def measure(deblurrer: Deblurrer, pair: Pair, _: int) -> dict[str, float]:
        return refined_errors(deblurrer, refine, pair)

    try:
        return over_pairs(loaded, pairs_dir, measure, describe, limit, threads, progress)
    finally:
        for runner in runners.values():
            runner.close()


def markdown(table: dict[str, dict[str, float]]) -> str:
    """Mean refined error per latent, and its change against the estimate's mean error."""
    start = float(np.mean([errors["start"] for errors in table.values()]))
    lines = [
        f"Mean trajectory error over {len(table)} pairs: {start:.2f} px for the estimate, refined against:",
        "",
        "| latent image given to the refine graph | refined error (px) | change |",
        "|---|---:|---:|",
    ]
    for name, label in LATENTS.items():
        mean = float(np.mean([errors[name] for errors in table.values()]))
        lines.append(f"| {label} | {mean:.2f} | {100 * (mean / start - 1):+.0f}% |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return experiment_main(argv, "refine_latent", __doc__.splitlines()[0], run, markdown)


if __name__ == "__main__":
    sys.exit(main())
