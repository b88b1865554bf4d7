"""`python -m runtime.evaluate`: measure a bundle on (blurry, sharp) pairs with known camera motion. Torch-free.

python -m runtime.evaluate --engine BUNDLE --pairs DIR [--backend ort-cpu] [--out DIR] [--limit N]
                           [--refine [STEPS] [--refine-rerun] ...]

`DIR/pairs.json` is a list of objects with `name`, `blurry` and `sharp` (file names in DIR), `focal_length` (px)
and `trajectory` (25x3 radians, pitch/yaw/roll); `python -m models.make_pairs` writes such folders. Each blurry
image goes through `Deblurrer.restore` with its pair's focal length; per pair and on average the report gives
PSNR and SSIM (`runtime.tools.metrics`) of the blurry and of the restored image against the sharp one, the trajectory
error of the estimate and of zero motion (order-invariant mean reprojection displacement, px) and their ratio,
and the time per image. The table goes to stdout and, with `--out`, to `OUT/evaluation.md`, with
`OUT/evaluation.json` and a blurry | restored | sharp picture per pair in `OUT/pictures/`.

With `--refine` (options as `python -m runtime.deblur`), each pair's estimate is also refined (`runtime.core.refine`)
and the report puts the refined figures beside the unrefined ones: trajectory error, PSNR and SSIM (which change
only with `--refine-rerun`), reblur loss before and after, and the refinement's time.

A pairs.json that cannot be used (missing, not JSON, an entry without a key, a trajectory of the wrong shape) is
refused with one line naming the file and the entry, before any work (exit 2). A pair that fails later (an image
missing or unreadable, sizes that differ) is reported and the others go on; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.core.backends import BackendSettings, add_backend_arguments, backend_settings
from runtime.core.backends.base import BackendError
from runtime.core.bundle import BundleError, load_bundle
from runtime.core.deblurrer import Deblurrer, RestoreSettings, add_estimation_argument
from runtime.core.refine import RefineSettings, add_refine_arguments, refine_settings
from runtime.io import pictures
from runtime.io.media import MediaError, make_outdir, read_image, to_file_pixels, write_bytes, write_image
from runtime.tools import metrics
from runtime.tools.pairs import Pair, PairsError, read_pairs

REPORT_MD = "evaluation.md"
REPORT_JSON = "evaluation.json"
PICTURES = "pictures"
#: The per-pair numbers that are averaged (each average is the plain mean of the rows).
MEAN_COLUMNS = (
    "psnr_blurry",
    "psnr_restored",
    "psnr_gain",
    "ssim_blurry",
    "ssim_restored",
    "trajectory_error_px",
    "path_order_error_px",
    "zero_motion_error_px",
    "error_ratio",
    "seconds",
)
CONVENTIONS = {
    "images": "RGB in [0, 1]; the restored image is clipped to [0, 1], not quantised",
    "psnr": "dB, data range 1",
    "ssim": "Wang et al. 2004, Gaussian window 11x11 sigma 1.5, K1 0.01, K2 0.03, per RGB channel, averaged",
    "trajectory_error": (
        "mean displacement (px) of the 4 corners and the principal point between estimated and true poses, "
        "poses matched one-to-one by optimal assignment; zero motion: the all-zero trajectory"
    ),
    "path_order_error": (
        "the same displacement between the i-th estimated and the i-th true pose, both in the reference's pose "
        "order, better direction: above the trajectory error when the estimated poses do not form the true path"
    ),
    "error_ratio": "trajectory error / zero-motion error, per pair",
    "seconds": "wall time of Deblurrer.restore (trajectory + restoration), after one warm-up run",
    "refined": "the same figures after trajectory refinement; seconds: refinement (and re-run) only",
}
#: The refined figures that are averaged.
REFINED_MEAN_COLUMNS = (
    "psnr_restored",
    "psnr_gain",
    "ssim_restored",
    "trajectory_error_px",
    "error_ratio",
    "reblur_loss_before",
    "reblur_loss_after",
    "seconds",
)


@dataclass(frozen=True)
class Refined:
    """What one pair measured after refinement of its estimate."""

    psnr_restored: float
    psnr_gain: float
    ssim_restored: float
    trajectory_error_px: float
    error_ratio: float
    reblur_loss_before: float
    reblur_loss_after: float
    #: Refinement (and re-run) time.
    seconds: float
    trajectory_estimate: list[list[float]]


@dataclass(frozen=True)
class Row:
    """What one pair measured."""

    name: str
    width: int
    height: int
    focal_length: float
    psnr_blurry: float
    psnr_restored: float
    psnr_gain: float
    ssim_blurry: float
    ssim_restored: float
    trajectory_error_px: float
    #: The error with both trajectories in the reference's time order (how well the frame sequence follows).
    path_order_error_px: float
    zero_motion_error_px: float
    #: trajectory error / zero-motion error; NaN when the true motion is zero.
    error_ratio: float
    seconds: float
    #: `(P, 3)` radians, as the bundle estimated it.
    trajectory_estimate: list[list[float]]
    #: The before/after picture, relative to the output folder (None without one).
    picture: str | None = None
    #: The figures after refinement, when the evaluation refines.
    refined: Refined | None = None


@dataclass
class Evaluation:
    """Rows of the pairs that ran, `(name, reason)` of those that failed, and what ran them."""

    bundle: str
    backend: str
    precision: str
    pairs_dir: str
    rows: list[Row] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: The Deblurrer's `estimation_side` (None: the trajectory net ran at full resolution).
    estimation_side: int | None = None

    def mean(self) -> dict[str, float]:
        """The plain mean of each column of `MEAN_COLUMNS` over the rows (NaN without rows)."""
        return {
            column: float(np.mean([getattr(row, column) for row in self.rows])) if self.rows else math.nan
            for column in MEAN_COLUMNS
        }

    def refined_mean(self) -> dict[str, float] | None:
        """The plain mean of each refined column over the rows (None when the evaluation did not refine)."""
        refined = [row.refined for row in self.rows if row.refined is not None]
        if not refined:
            return None
        return {column: float(np.mean([getattr(item, column) for item in refined])) for column in REFINED_MEAN_COLUMNS}

    def ratio_of_mean_errors(self, refined: bool = False) -> float:
        """Mean trajectory error over mean zero-motion error: the set's figure, robust to near-still pairs."""
        mean = self.mean()
        errors = self.refined_mean() if refined else mean
        zero = mean["zero_motion_error_px"]
        return errors["trajectory_error_px"] / zero if errors is not None and zero > 0 else math.nan

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description; non-finite numbers (infinite PSNR, undefined ratios) become null."""
        return finite_or_null(
            {
                "bundle": self.bundle,
                "backend": self.backend,
                "precision": self.precision,
                "pairs_dir": self.pairs_dir,
                "estimation_side": self.estimation_side,
                "conventions": CONVENTIONS,
                "pairs": [asdict(row) for row in self.rows],
                "mean": self.mean(),
                "trajectory_error_ratio_of_means": self.ratio_of_mean_errors(),
                "refined_mean": self.refined_mean(),
                "refined_trajectory_error_ratio_of_means": self.ratio_of_mean_errors(refined=True),
                "failed": [{"name": name, "error": reason} for name, reason in self.failed],
            }
        )

    def markdown(self) -> str:
        """The report: a table of every pair and their mean, the set's error ratio and the failures."""
        estimation = "" if self.estimation_side is None else f", trajectory net at <= {self.estimation_side} px"
        lines = [
            f"Evaluation of `{self.bundle}` on `{self.pairs_dir}` ({self.backend}, {self.precision}{estimation}): "
            f"{len(self.rows)} pairs" + (f", {len(self.failed)} failed" if self.failed else ""),
            "",
            "| pair | size | f px | PSNR blurry | PSNR restored | gain dB | SSIM blurry | SSIM restored "
            "| traj. error px | in path order px | zero motion px | ratio | time s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in self.rows:
            lines.append(_table_row(row.name, f"{row.width}x{row.height}", f"{row.focal_length:g}", asdict(row)))
        if self.rows:
            lines.append(_table_row("**mean**", "", "", self.mean()))
            mean = self.mean()
            lines += [
                "",
                f"Trajectory error over all pairs: {mean['trajectory_error_px']:.2f} px against "
                f"{mean['zero_motion_error_px']:.2f} px for zero motion (ratio of the means "
                f"{_number(self.ratio_of_mean_errors(), 2)}).",
            ]
        lines += [
            "",
            "PSNR in dB (data range 1), SSIM per RGB channel (Gaussian window 11x11, sigma 1.5) averaged; restored "
            "images clipped to [0, 1]. Trajectory error: mean displacement of the corners and the principal point "
            "between optimally matched estimated and true poses; in path order: between the i-th poses of both in the "
            "reference's pose order. Time: `Deblurrer.restore`, after one warm-up run.",
        ]
        lines += self._refined_markdown()
        if self.failed:
            lines += ["", "Failed:", *(f"- {name}: {reason}" for name, reason in self.failed)]
        return "\n".join(lines) + "\n"

    def _refined_markdown(self) -> list[str]:
        """The unrefined and refined figures side by side (nothing when the evaluation did not refine)."""
        refined_mean = self.refined_mean()
        if refined_mean is None:
            return []
        lines = [
            "",
            "With trajectory refinement (unrefined -> refined):",
            "",
            "| pair | traj. error px | change | PSNR restored | SSIM restored | reblur loss | refine s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        rows = [(row.name, asdict(row), asdict(row.refined)) for row in self.rows if row.refined is not None]
        for name, plain, refined in [*rows, ("**mean**", self.mean(), refined_mean)]:
            change = refined["trajectory_error_px"] / plain["trajectory_error_px"] - 1
            cells = [
                name,
                f"{_number(plain['trajectory_error_px'], 2)} -> {_number(refined['trajectory_error_px'], 2)}",
                _number(100 * change, 1, signed=True) + "%",
                f"{_number(plain['psnr_restored'], 2)} -> {_number(refined['psnr_restored'], 2)}",
                f"{plain['ssim_restored']:.4f} -> {refined['ssim_restored']:.4f}",
                f"{refined['reblur_loss_before']:.3e} -> {refined['reblur_loss_after']:.3e}",
                _number(refined["seconds"], 3),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            f"Trajectory error ratio of the means: {_number(self.ratio_of_mean_errors(), 2)} unrefined, "
            f"{_number(self.ratio_of_mean_errors(refined=True), 2)} refined.",
        ]
        return lines


def _table_row(name: str, size: str, focal: str, values: dict[str, Any]) -> str:
    cells = [
        name,
        size,
        focal,
        _number(values["psnr_blurry"], 2),
        _number(values["psnr_restored"], 2),
        _number(values["psnr_gain"], 2, signed=True),
        _number(values["ssim_blurry"], 4),
        _number(values["ssim_restored"], 4),
        _number(values["trajectory_error_px"], 2),
        _number(values["path_order_error_px"], 2),
        _number(values["zero_motion_error_px"], 2),
        _number(values["error_ratio"], 2),
        _number(values["seconds"], 3),
    ]
    return "| " + " | ".join(cells) + " |"


def _number(value: float, digits: int, signed: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def finite_or_null(value: Any) -> Any:
    """`value` (nested dicts and lists) with non-finite floats as None, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


# --- running -----------------------------------------------------------------------------------------------------


def evaluate_pair(deblurrer: Deblurrer, pair: Pair, warm_up: bool = False) -> tuple[Row, np.ndarray]:
    """Restore one pair and measure it: (its row, the blurry | restored | sharp picture as uint8 BGR).

    When the Deblurrer refines, the unrefined result is measured, then refined and measured again; the picture
    shows the refined result.
    """
    blurry = read_image(pair.blurry).rgb
    sharp = read_image(pair.sharp).rgb
    if blurry.shape != sharp.shape:
        raise ValueError(
            f"{pair.blurry.name} is {blurry.shape[1]}x{blurry.shape[0]} but {pair.sharp.name} is "
            f"{sharp.shape[1]}x{sharp.shape[0]}"
        )
    if warm_up:
        deblurrer.restore(blurry, pair.focal_length, refine=False)
    started = time.perf_counter()
    result = deblurrer.restore(blurry, pair.focal_length, refine=False)
    seconds = time.perf_counter() - started
    restored = np.clip(result.restored, 0, 1)
    height, width = blurry.shape[:2]
    estimated = metrics.trajectory_error(result.trajectory, pair.trajectory, height, width, pair.focal_length)
    zero = metrics.zero_motion_error(pair.trajectory, height, width, pair.focal_length)
    psnr_blurry, psnr_restored = metrics.psnr(blurry, sharp), metrics.psnr(restored, sharp)
    row = Row(
        name=pair.name,
        width=width,
        height=height,
        focal_length=pair.focal_length,
        psnr_blurry=psnr_blurry,
        psnr_restored=psnr_restored,
        psnr_gain=psnr_restored - psnr_blurry,
        ssim_blurry=metrics.ssim(blurry, sharp),
        ssim_restored=metrics.ssim(restored, sharp),
        trajectory_error_px=estimated,
        path_order_error_px=metrics.path_order_error(
            result.trajectory, pair.trajectory, height, width, pair.focal_length
        ),
        zero_motion_error_px=zero,
        error_ratio=estimated / zero if zero > 0 else math.nan,
        seconds=seconds,
        trajectory_estimate=np.asarray(result.trajectory, dtype=np.float64).tolist(),
    )
    if deblurrer.refine is not None:
        refined = deblurrer.refine_result(blurry, result)
        assert refined.refinement is not None
        restored = np.clip(refined.restored, 0, 1)
        psnr_restored = metrics.psnr(restored, sharp)
        error = metrics.trajectory_error(refined.trajectory, pair.trajectory, height, width, pair.focal_length)
        row = replace(
            row,
            refined=Refined(
                psnr_restored=psnr_restored,
                psnr_gain=psnr_restored - psnr_blurry,
                ssim_restored=metrics.ssim(restored, sharp),
                trajectory_error_px=error,
                error_ratio=error / zero if zero > 0 else math.nan,
                reblur_loss_before=refined.refinement.loss_before,
                reblur_loss_after=refined.refinement.loss_after,
                seconds=refined.timings["refine"] + refined.timings.get("restoration_rerun", 0.0),
                trajectory_estimate=np.asarray(refined.trajectory, dtype=np.float64).tolist(),
            ),
        )
    return row, before_after(blurry, restored, sharp, psnr_blurry, psnr_restored)


def before_after(
    blurry: np.ndarray, restored: np.ndarray, sharp: np.ndarray, psnr_blurry: float, psnr_restored: float
) -> np.ndarray:
    """Blurry | restored | sharp side by side (uint8 BGR), each labelled, PSNRs in the labels."""
    return pictures.side_by_side(
        [
            (to_file_pixels(blurry), f"blurry {_number(psnr_blurry, 1)} dB"),
            (to_file_pixels(restored), f"restored {_number(psnr_restored, 1)} dB"),
            (to_file_pixels(sharp), "sharp"),
        ]
    )


def evaluate_pairs(
    deblurrer: Deblurrer,
    pairs: Sequence[Pair],
    out: Path | None = None,
    progress: Callable[[str], object] | None = None,
    pairs_dir: str = "",
) -> Evaluation:
    """Evaluate every pair with one Deblurrer (refined and unrefined when it refines); a pair that fails is
    recorded with its reason and the rest go on.

    With `out`, each pair's picture is written to `out/pictures/NAME.png` (never over an input file).
    """
    progress = progress or _stderr
    evaluation = Evaluation(
        str(deblurrer.bundle.path),
        deblurrer.backend,
        deblurrer.backend_settings.precision,
        pairs_dir,
        estimation_side=deblurrer.restore_settings.estimation_side,
    )
    inputs = {path.resolve() for pair in pairs for path in (pair.blurry, pair.sharp)}
    warmed = False
    for index, pair in enumerate(pairs, 1):
        label = f"[{index}/{len(pairs)}] {pair.name}"
        try:
            row, picture = evaluate_pair(deblurrer, pair, warm_up=not warmed)
            warmed = True
            if out is not None:
                relative = f"{PICTURES}/{pair.name}.png"
                if (out / relative).resolve() in inputs:
                    raise MediaError(f"{out / relative}: the picture would overwrite an input; choose another --out")
                write_image(out / relative, picture)
                row = replace(row, picture=relative)
        except (MediaError, ValueError, OSError, BackendError, cv2.error) as error:
            reason = " ".join(str(error).split())
            evaluation.failed.append((pair.name, reason))
            progress(f"{label}: failed: {reason}")
            continue
        evaluation.rows.append(row)
        refined = (
            f"; refined: trajectory {row.refined.trajectory_error_px:.2f} px, PSNR "
            f"{_number(row.refined.psnr_restored, 2)} dB, {row.refined.seconds:.2f} s"
            if row.refined is not None
            else ""
        )
        progress(
            f"{label}: PSNR {_number(row.psnr_blurry, 2)} -> {_number(row.psnr_restored, 2)} dB, "
            f"SSIM {row.ssim_blurry:.3f} -> {row.ssim_restored:.3f}, trajectory {row.trajectory_error_px:.2f} px "
            f"(zero motion {row.zero_motion_error_px:.2f}), {row.seconds:.2f} s{refined}"
        )
    return evaluation


def write_reports(evaluation: Evaluation, out: Path) -> None:
    """`out/evaluation.md` and `out/evaluation.json`, each written atomically."""
    write_bytes(out / REPORT_MD, evaluation.markdown().encode())
    write_bytes(out / REPORT_JSON, (json.dumps(evaluation.to_json(), indent=2, allow_nan=False) + "\n").encode())


def evaluate(
    bundle: str | Path,
    pairs_dir: str | Path,
    backend: BackendSettings = BackendSettings(),
    out: str | Path | None = None,
    limit: int | None = None,
    progress: Callable[[str], object] | None = None,
    refine: RefineSettings | None = None,
    estimation_side: int | None = None,
) -> Evaluation:
    """Evaluate a bundle on a pairs folder: the API behind the command (reports written when `out` is given).
    With `refine`, each estimate is also refined and both sets of figures are reported. `estimation_side` is
    `RestoreSettings.estimation_side`.

    Raises BundleError, PairsError, BackendError or MediaError (one line each) when the run cannot start.
    """
    progress = progress or _stderr
    pairs_dir = Path(pairs_dir)
    loaded = load_bundle(bundle)
    pairs = read_pairs(pairs_dir, loaded.n_positions)[:limit]
    out = Path(out) if out is not None else None
    if out is not None:
        make_outdir(out)
    restore = RestoreSettings(estimation_side=estimation_side)
    with Deblurrer(loaded, backend, restore, refine, log=progress) as deblurrer:
        evaluation = evaluate_pairs(deblurrer, pairs, out, progress, str(pairs_dir))
    if out is not None:
        write_reports(evaluation, Path(out))
    return evaluation


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def add_pairs_arguments(parse: argparse.ArgumentParser, reports: str) -> None:
    """`--engine`, `--pairs`, `--out` (writing `reports`) and `--limit`: how the commands that measure a bundle on
    evaluation pairs are pointed at them. `limit_error` checks `--limit`."""
    parse.add_argument("--engine", type=Path, required=True, metavar="BUNDLE", help="bundle directory")
    parse.add_argument("--pairs", type=Path, required=True, metavar="DIR", help="folder holding pairs.json")
    parse.add_argument("--out", type=Path, metavar="DIR", help=f"write {reports}")
    parse.add_argument("--limit", type=int, metavar="N", help="the first N pairs only")


def limit_error(limit: int | None) -> str | None:
    """The one-line error for a `--limit` below 1 (None when it is fine)."""
    return None if limit is None or limit >= 1 else f"--limit must be at least 1, got {limit}"


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m runtime.evaluate", description=__doc__.splitlines()[0])
    add_pairs_arguments(parse, "evaluation.md, evaluation.json and pictures")
    add_backend_arguments(parse)
    add_estimation_argument(parse)
    add_refine_arguments(parse)
    return parse


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if limit_error(args.limit):
        print(f"error: {limit_error(args.limit)}", file=sys.stderr)
        return 2
    try:
        refine = refine_settings(args)
        evaluation = evaluate(
            args.engine,
            args.pairs,
            backend_settings(args),
            args.out,
            args.limit,
            refine=refine,
            estimation_side=args.estimation_side,
        )
    except (BundleError, PairsError, BackendError, MediaError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(evaluation.markdown(), end="")
    where = f"; reports in {args.out}" if args.out is not None else ""
    print(f"{len(evaluation.rows)} evaluated, {len(evaluation.failed)} failed{where}", file=sys.stderr)
    for name, reason in evaluation.failed:
        print(f"failed: {name}: {reason}", file=sys.stderr)
    return 1 if evaluation.failed else 0


if __name__ == "__main__":
    sys.exit(main())
