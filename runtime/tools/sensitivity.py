"""`python -m runtime.sensitivity`: how a bundle's restored quality depends on its trajectory error. Torch-free.

python -m runtime.sensitivity --engine BUNDLE --pairs DIR [--blends 0,0.1,...,1] [--scales 0.5,...] [--out DIR]
                              [--backend ...] [--precision ...] [--limit N]

On evaluation pairs (`runtime.tools.evaluate`'s pairs.json), the bundle first estimates each pair's trajectory; then the
restoration runs again with given trajectories instead of the estimate:

- blends `b`: `truth + b (matched - truth)`, where `matched` is the estimate with its poses matched one to one to
  the true poses (as the trajectory error matches them). `b = 0` is the true trajectory, the restoration's ceiling;
  `b = 1` is the estimate; in between, every pose moves straight from its true value towards its estimate.
- scales `s`: `s * estimate`, the estimate shrunk or stretched about the rest pose.

For each, per pair and on average: trajectory error (px), PSNR and SSIM of the restored image against the sharp
one, and the gain over the blurry input. The curve says how accurate a trajectory this restoration needs, and so
whether the trajectory net or the restoration net limits a bundle. Markdown on stdout; with `--out`, also
`sensitivity.md`, `sensitivity.json` and `sensitivity.png` (PSNR gain against trajectory error).

Bad input is refused as `runtime.tools.evaluate` refuses it (exit 2); a pair that fails is reported, the others go on,
and the exit code is then 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.core.backends import BackendSettings, add_backend_arguments, backend_settings
from runtime.core.backends.base import BackendError
from runtime.core.bundle import BundleError, load_bundle
from runtime.core.deblurrer import Deblurrer
from runtime.io.media import MediaError, make_outdir, read_image, write_bytes, write_image
from runtime.tools import charts, metrics
from runtime.tools.evaluate import (
    Pair,
    PairsError,
    add_pairs_arguments,
    finite_or_null,
    limit_error,
    read_pairs,
)

DEFAULT_BLENDS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
REPORT_MD = "sensitivity.md"
REPORT_JSON = "sensitivity.json"
REPORT_PNG = "sensitivity.png"
KINDS = ("blend", "scale")


@dataclass(frozen=True)
class Point:
    """One pair restored with one given trajectory."""

    kind: str
    value: float
    trajectory_error_px: float
    psnr_restored: float
    psnr_gain: float
    ssim_restored: float


@dataclass(frozen=True)
class PairSweep:
    """One pair: its blurry image's figures and one `Point` per given trajectory."""

    name: str
    psnr_blurry: float
    ssim_blurry: float
    zero_motion_error_px: float
    points: list[Point]


@dataclass
class Sensitivity:
    """The sweeps of the pairs that ran and `(name, reason)` of those that failed."""

    bundle: str
    backend: str
    precision: str
    pairs_dir: str
    pairs: list[PairSweep] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def mean(self) -> list[Point]:
        """Each given trajectory's figures averaged over the pairs (plain means), in sweep order."""
        if not self.pairs:
            return []
        columns = zip(*(sweep.points for sweep in self.pairs), strict=True)
        return [
            Point(
                kind=points[0].kind,
                value=points[0].value,
                trajectory_error_px=_mean(point.trajectory_error_px for point in points),
                psnr_restored=_mean(point.psnr_restored for point in points),
                psnr_gain=_mean(point.psnr_gain for point in points),
                ssim_restored=_mean(point.ssim_restored for point in points),
            )
            for points in columns
        ]

    def markdown(self) -> str:
        """The mean of every given trajectory, one table per kind, then the failures."""
        lines = [
            f"Sensitivity of `{self.bundle}` to trajectory error on `{self.pairs_dir}` "
            f"({self.backend}, {self.precision}): {len(self.pairs)} pairs"
            + (f", {len(self.failed)} failed" if self.failed else ""),
        ]
        if self.pairs:
            blurry = _mean(sweep.psnr_blurry for sweep in self.pairs)
            zero = _mean(sweep.zero_motion_error_px for sweep in self.pairs)
            lines += ["", f"Mean PSNR of the blurry input {blurry:.2f} dB; zero-motion trajectory error {zero:.2f} px."]
        headings = {
            "blend": "blend b (truth + b (estimate - truth); 0 = true trajectory, 1 = estimate)",
            "scale": "scale s (s x estimate)",
        }
        for kind in KINDS:
            points = [point for point in self.mean() if point.kind == kind]
            if not points:
                continue
            lines += [
                "",
                f"| {headings[kind]} | traj. error px | PSNR restored | gain dB | SSIM restored |",
                "|---:|---:|---:|---:|---:|",
            ]
            lines += [
                f"| {point.value:g} | {point.trajectory_error_px:.2f} | {point.psnr_restored:.2f} | "
                f"{point.psnr_gain:+.2f} | {point.ssim_restored:.4f} |"
                for point in points
            ]
        if self.failed:
            lines += ["", "Failed:", *(f"- {name}: {reason}" for name, reason in self.failed)]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description: the means, every pair's points and the failures (non-finite numbers, such as
        the PSNR of a pair without blur, as null)."""
        return finite_or_null(
            {
                "bundle": self.bundle,
                "backend": self.backend,
                "precision": self.precision,
                "pairs_dir": self.pairs_dir,
                "mean": [asdict(point) for point in self.mean()],
                "pairs": [asdict(sweep) for sweep in self.pairs],
                "failed": [{"name": name, "error": reason} for name, reason in self.failed],
            }
        )

    def chart(self) -> np.ndarray:
        """PSNR gain against trajectory error: one line per kind, in order of blend or scale, points labelled
        (points with a non-finite mean, as when a pair has no blur and so an infinite PSNR, are left out)."""
        names = {"blend": "truth -> estimate (b = blend)", "scale": "scaled estimate (s = scale)"}
        series = []
        for kind in KINDS:
            drawable = [p for p in self.mean() if p.kind == kind and math.isfinite(p.trajectory_error_px + p.psnr_gain)]
            points = sorted(drawable, key=lambda point: point.value)
            if points:
                line = [(p.trajectory_error_px, p.psnr_gain, f"{kind[0]}={p.value:g}") for p in points]
                series.append((names[kind], line))
        title = f"{Path(self.bundle).name}: restored PSNR gain vs trajectory error ({len(self.pairs)} pairs)"
        return charts.sensitivity_chart(series, title)


def _mean(values: Any) -> float:
    return float(np.mean(list(values)))


def given_trajectories(
    estimate: np.ndarray,
    truth: np.ndarray,
    height: int,
    width: int,
    focal_length: float,
    blends: Sequence[float],
    scales: Sequence[float],
) -> list[tuple[str, float, np.ndarray]]:
    """`(kind, value, trajectory)` for each blend (towards the pose-matched estimate) and each scale."""
    matched = metrics.matched_trajectory(estimate, truth, height, width, focal_length)
    return [("blend", blend, truth + blend * (matched - truth)) for blend in blends] + [
        ("scale", scale, scale * np.asarray(estimate, dtype=np.float64)) for scale in scales
    ]


def sweep_pair(deblurrer: Deblurrer, pair: Pair, blends: Sequence[float], scales: Sequence[float]) -> PairSweep:
    """Estimate one pair's trajectory, then restore it with each given trajectory and measure the results."""
    blurry = read_image(pair.blurry).rgb
    sharp = read_image(pair.sharp).rgb
    if blurry.shape != sharp.shape:
        raise ValueError(f"{pair.blurry.name} and {pair.sharp.name} differ in size")
    height, width = blurry.shape[:2]
    estimate, _ = deblurrer.estimate_trajectory(blurry, pair.focal_length)
    psnr_blurry = metrics.psnr(blurry, sharp)
    points = []
    for kind, value, trajectory in given_trajectories(
        estimate, pair.trajectory, height, width, pair.focal_length, blends, scales
    ):
        result = deblurrer.restore(blurry, pair.focal_length, trajectory=trajectory.astype(np.float32), refine=False)
        restored = np.clip(result.restored, 0, 1)
        psnr_restored = metrics.psnr(restored, sharp)
        points.append(
            Point(
                kind=kind,
                value=value,
                trajectory_error_px=metrics.trajectory_error(
                    trajectory, pair.trajectory, height, width, pair.focal_length
                ),
                psnr_restored=psnr_restored,
                psnr_gain=psnr_restored - psnr_blurry,
                ssim_restored=metrics.ssim(restored, sharp),
            )
        )
    return PairSweep(
        name=pair.name,
        psnr_blurry=psnr_blurry,
        ssim_blurry=metrics.ssim(blurry, sharp),
        zero_motion_error_px=metrics.zero_motion_error(pair.trajectory, height, width, pair.focal_length),
        points=points,
    )


def sensitivity(
    bundle: str | Path,
    pairs_dir: str | Path,
    blends: Sequence[float] = DEFAULT_BLENDS,
    scales: Sequence[float] = (),
    backend: BackendSettings = BackendSettings(),
    out: str | Path | None = None,
    limit: int | None = None,
    progress: Callable[[str], object] | None = None,
) -> Sensitivity:
    """Sweep a bundle's restoration over trajectories between the truth and its estimate (and scaled estimates) on
    a pairs folder: the API behind the command (reports and chart written when `out` is given).

    Raises BundleError, PairsError, BackendError or MediaError (one line each) when the run cannot start.
    """
    progress = progress or _stderr
    if not blends and not scales:
        raise ValueError("nothing to sweep: give at least one blend or scale")
    loaded = load_bundle(bundle)
    pairs = read_pairs(Path(pairs_dir), loaded.n_positions)[:limit]
    out = Path(out) if out is not None else None
    if out is not None:
        make_outdir(out)
    with Deblurrer(loaded, backend, log=progress) as deblurrer:
        report = Sensitivity(str(loaded.path), deblurrer.backend, backend.precision, str(pairs_dir))
        for index, pair in enumerate(pairs, 1):
            label = f"[{index}/{len(pairs)}] {pair.name}"
            try:
                sweep = sweep_pair(deblurrer, pair, blends, scales)
            except (MediaError, ValueError, OSError, BackendError, cv2.error) as error:
                reason = " ".join(str(error).split())
                report.failed.append((pair.name, reason))
                progress(f"{label}: failed: {reason}")
                continue
            report.pairs.append(sweep)
            figures = ", ".join(
                f"{point.kind[0]}={point.value:g}: {point.trajectory_error_px:.2f} px {point.psnr_gain:+.2f} dB"
                for point in sweep.points
            )
            progress(f"{label}: {figures}")
    if out is not None:
        write_bytes(out / REPORT_MD, report.markdown().encode())
        write_bytes(out / REPORT_JSON, (json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n").encode())
        try:
            write_image(out / REPORT_PNG, report.chart())
        except ValueError as error:  # nothing drawable: no pair ran, or every mean is non-finite
            progress(f"{out / REPORT_PNG}: not written ({error})")
    return report


def _numbers(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(value) for value in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m runtime.sensitivity", description=__doc__.splitlines()[0])
    add_pairs_arguments(parse, "sensitivity.md, .json and .png")
    parse.add_argument(
        "--blends",
        type=_numbers,
        default=DEFAULT_BLENDS,
        metavar="B,C,...",
        help="trajectories truth + b (estimate - truth); 0 = truth, 1 = estimate (default %(default)s)",
    )
    parse.add_argument("--scales", type=_numbers, default=(), metavar="S,T,...", help="also trajectories s x estimate")
    add_backend_arguments(parse)
    return parse


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if limit_error(args.limit):
        print(f"error: {limit_error(args.limit)}", file=sys.stderr)
        return 2
    try:
        report = sensitivity(
            args.engine,
            args.pairs,
            args.blends,
            args.scales,
            backend_settings(args),
            args.out,
            args.limit,
        )
    except (BundleError, PairsError, BackendError, MediaError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.markdown(), end="")
    for name, reason in report.failed:
        print(f"failed: {name}: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
