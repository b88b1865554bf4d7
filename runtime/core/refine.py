"""Trajectory refinement after inference: Adam on the reblur loss, driven by the bundle's `refine` graph (numpy).

The `refine` graph (`export.refine`) returns the reblur loss `mean (PMBM(latent, trajectory) - blurry)^2` and its
exact gradient with respect to the `(P, 3)` rotations; this loop needs nothing else, so it runs on any backend:

    runners = load_runners(bundle, ("refine", "sequence"), BackendSettings("ort-cpu"))[1]
    run_refine, run_sequence = graph_function(runners["refine"]), graph_function(runners["sequence"])
    result = refine_trajectory(run_refine, blurry, restored, trajectory, camera, run_sequence=run_sequence)

The sequence graph is optional: when given, full-resolution evaluations that need no gradient (the start and the
result when all steps run at coarse levels, as by default) take the reblurred image from it, about a third of the
cost of a refine-graph run.

Adam rather than Gauss-Newton/Levenberg-Marquardt: the graph returns the loss and its gradient, all Adam needs
(`docs/refinement.md` says why not the others). The best iterate is kept: the result's reblur loss is never above
the starting one, and a step that gives a non-finite loss or gradient ends the loop with the best finite iterate.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from runtime.core.backends.base import Runner

#: `inputs -> outputs` of a bundle graph. The refine graph: inputs blurry, latent `(1, 3, H, W)`, trajectory
#: `(1, P, 3)`, intrinsics `(1, 3, 3)`, mask `(1, 1, H, W)` (float32); outputs loss `(1,)` and gradient
#: `(1, P, 3)`. The sequence graph: inputs sharp, trajectory, intrinsics; output reblurred `(1, 3, H, W)` (used).
GraphFunction = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]

DEFAULT_STEPS = 30
#: Adam's step, in pixels of displacement at the focal length (radians = step_size / f).
DEFAULT_STEP_SIZE = 0.25
#: Default resolution: a quarter of the image. The refine graph costs about a quarter of the demo restoration per
#: run at full size, so full-resolution steps would cost several restorations; at a quarter, 30 steps and the two
#: full-resolution evaluations (start and result, through the sequence graph) cost less than one (0.96 of one at
#: 512x512 on onnxruntime's CPU provider: `python -m runtime.benchmark`, `docs/refinement.md`).
DEFAULT_SCALES = (0.25,)
#: Smallest side of a coarse level, in pixels.
MIN_LEVEL_SIDE = 16
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-12


@dataclass(frozen=True)
class RefineResult:
    """The refined trajectory and how the reblur loss went."""

    #: `(P, 3)` float32 radians: the best iterate (the start if no step improved).
    trajectory: np.ndarray
    #: Reblur loss (masked mean squared error, image range 0..1) at the start and at `trajectory`.
    loss_before: float
    loss_after: float
    #: Adam steps taken (fewer than asked when a step went non-finite).
    steps_run: int
    #: Full-resolution reblur loss of every iterate evaluated there, the start first.
    history: list[float] = field(default_factory=list)
    #: "steps" (all steps ran) or "non-finite" (a step gave NaN/inf and the loop stopped).
    stopped: str = "steps"
    #: Per coarse level (coarsest first): the reblur loss at that resolution of every iterate evaluated there.
    coarse_history: list[list[float]] = field(default_factory=list)


def _schedule(scales: Sequence[float], steps: int | Sequence[int]) -> list[tuple[float, int]]:
    """(scale, steps) per level, coarse to fine, checked."""
    factors = [float(factor) for factor in scales]
    if not factors or factors != sorted(set(factors)) or not all(0 < f <= 1 for f in factors):
        raise ValueError(f"scales must be increasing, distinct, in (0, 1], got {list(scales)}")
    counts = [steps] * len(factors) if isinstance(steps, int | np.integer) else list(steps)
    if len(counts) != len(factors) or not all(_is_count(count) for count in counts):
        raise ValueError(f"steps must be an integer >= 0 (or one per scale), got {steps!r}")
    return list(zip(factors, (int(count) for count in counts), strict=True))


def _check_step_size_and_smoothness(step_size: float, smoothness: float) -> None:
    if not (isinstance(step_size, int | float) and math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step size must be a positive number of pixels, got {step_size!r}")
    if not (isinstance(smoothness, int | float) and math.isfinite(smoothness) and smoothness >= 0):
        raise ValueError(f"smoothness must be a finite number >= 0, got {smoothness!r}")


def _is_count(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and int(value) >= 0


@dataclass(frozen=True)
class RefineSettings:
    """How a trajectory is refined (`refine_trajectory`), checked when made.

    Adam runs `steps` steps of `step_size` px (at the focal length); `smoothness` >= 0 weighs the prior
    `sum_i |t_(i+1) - t_i|^2` (radians^2) added to the objective. Coarse to fine: `scales` lists resolutions,
    increasing, as fractions of the image size (e.g. `(0.25, 1.0)`); `steps` is then one count per scale (or one
    count for every scale). `rerun` is the Deblurrer's: restore again with the refined trajectory (else its
    restored image is the one refinement started from).
    """

    steps: int | tuple[int, ...] = DEFAULT_STEPS
    step_size: float = DEFAULT_STEP_SIZE
    smoothness: float = 0.0
    scales: tuple[float, ...] = DEFAULT_SCALES
    rerun: bool = False

    def __post_init__(self) -> None:
        _schedule(self.scales, self.steps)
        _check_step_size_and_smoothness(self.step_size, self.smoothness)


def add_refine_arguments(parser: argparse.ArgumentParser) -> None:
    """The refinement options of the command lines (`--refine [STEPS]`, `--refine-rerun`, ...)."""
    group = parser.add_argument_group("trajectory refinement (needs the bundle's refine graph)")
    group.add_argument(
        "--refine",
        type=int,
        nargs="?",
        const=DEFAULT_STEPS,
        metavar="STEPS",
        help=f"refine each trajectory estimate on the reblur error: STEPS per scale (default {DEFAULT_STEPS})",
    )
    group.add_argument("--refine-rerun", action="store_true", help="restore again with the refined trajectory")
    group.add_argument(
        "--refine-step-size", type=float, default=DEFAULT_STEP_SIZE, metavar="PX", help="Adam step in pixels"
    )
    group.add_argument(
        "--refine-smoothness", type=float, default=0.0, help="weight of the trajectory smoothness prior (default 0)"
    )
    group.add_argument(
        "--refine-scales",
        type=_scales,
        default=DEFAULT_SCALES,
        metavar="S1,S2,...",
        help="coarse-to-fine resolutions as fractions of the image, increasing (default 0.25)",
    )


def _scales(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def refine_settings(args: argparse.Namespace) -> RefineSettings | None:
    """The refinement the arguments ask for (None without --refine); raises ValueError on bad values."""
    if args.refine is None:
        if args.refine_rerun:
            raise ValueError("--refine-rerun needs --refine")
        return None
    return RefineSettings(
        steps=args.refine,
        step_size=args.refine_step_size,
        smoothness=args.refine_smoothness,
        scales=args.refine_scales,
        rerun=args.refine_rerun,
    )


def graph_function(runner: Runner) -> GraphFunction:
    """A `GraphFunction` over a backend runner (sets input shapes before each run)."""

    def run(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        runner.set_shapes({name: value.shape for name, value in inputs.items()})
        return runner.run(inputs)

    return run


def refine_trajectory(
    run_refine: GraphFunction,
    blurry: npt.ArrayLike,
    latent: npt.ArrayLike,
    trajectory: npt.ArrayLike,
    camera: npt.ArrayLike,
    settings: RefineSettings = RefineSettings(),
    *,
    mask: npt.ArrayLike | None = None,
    n_positions: int | None = None,
    run_sequence: GraphFunction | None = None,
) -> RefineResult:
    """Refine a `(P, 3)` trajectory (radians) so that `latent` blurred by it matches `blurry`, as `settings` say.

    Images are HxWx3 float32 RGB in [0, 1] (or `(1, 3, H, W)`), `camera` the `(3, 3)` intrinsics in pixels of
    these images, `mask` an optional HxW validity map (1 = use the pixel). The best iterate by objective (reblur
    loss plus the smoothness prior) among those whose reblur loss does not exceed the starting one is returned.
    `n_positions`, when given, is the pose count the graph expects.

    Each coarse level starts from the best iterate of the one before, on area-averaged images with the intrinsics
    scaled to match. Whatever the levels, the result is judged by the full-resolution loss (evaluated at least at
    the start and at the last coarse level's best), so it is never worse than the start. `run_sequence` (the
    bundle's sequence graph), when given and no steps run at full resolution, computes those two full-resolution
    losses for less.
    """
    images = _images(blurry, "blurry"), _images(latent, "latent")
    if images[0].shape != images[1].shape:
        raise ValueError(f"blurry and latent differ in shape: {images[0].shape[1:]} vs {images[1].shape[1:]} (CHW)")
    height, width = images[0].shape[-2:]
    poses = _trajectory(trajectory, n_positions)
    intrinsics = _camera(camera)
    weights = _mask(mask, height, width)
    smoothness, step_size = settings.smoothness, settings.step_size

    levels = _levels(settings.scales, settings.steps, height, width)
    full_inputs = {"blurry": images[0], "latent": images[1], "intrinsics": intrinsics, "mask": weights}

    def prior(theta: np.ndarray) -> tuple[float, np.ndarray]:
        steps_between = np.diff(theta, axis=0)
        gradient = np.zeros_like(theta)
        gradient[1:] += 2 * steps_between
        gradient[:-1] -= 2 * steps_between
        return smoothness * float((steps_between * steps_between).sum()), smoothness * gradient

    # With no steps at full resolution, its evaluations (the start and the result) need no gradient.
    loss_only = run_sequence if dict(levels).get(1.0, 0) == 0 else None
    full = _Level(run_refine, full_inputs, loss_only)
    start = full.evaluate(poses) if loss_only is None else (full.loss(poses), np.zeros_like(poses))
    loss_before, gradient = start
    if not (math.isfinite(loss_before) and np.isfinite(gradient).all()):
        raise ValueError("the reblur loss or its gradient is not finite at the starting trajectory")
    theta, steps_run, stopped = poses, 0, "steps"
    coarse_history: list[list[float]] = []
    for factor, level_steps in levels:
        if factor == 1.0:
            continue
        level = _Level(run_refine, _resized(full_inputs, factor))
        outcome = _adam(level, theta, level_steps, step_size, prior, math.inf)
        theta, steps_run = outcome.best, steps_run + outcome.steps_run
        coarse_history.append(outcome.history)
        if outcome.stopped != "steps":
            stopped = outcome.stopped
            break
    full_steps = dict(levels).get(1.0, 0) if stopped == "steps" else 0
    # At full resolution only iterates whose reblur loss is not above the start's count; the start always does.
    outcome = _adam(full, theta, full_steps, step_size, prior, loss_before, start if theta is poses else None)
    steps_run += outcome.steps_run
    stopped = outcome.stopped if stopped == "steps" else stopped
    prior_start = prior(poses)[0]
    if outcome.best_loss is None or outcome.best_objective >= loss_before + prior_start:
        best, best_loss = poses, loss_before
    else:
        best, best_loss = outcome.best, outcome.best_loss
    history = outcome.history if theta is poses else [loss_before, *outcome.history]
    return RefineResult(best.astype(np.float32), loss_before, best_loss, steps_run, history, stopped, coarse_history)


class _Level:
    """The refine graph at one resolution: inputs fixed but the trajectory; evaluate gives (loss, gradient), loss
    the loss alone (through the sequence graph when the level has one)."""

    def __init__(
        self, run_refine: GraphFunction, inputs: dict[str, np.ndarray], run_sequence: GraphFunction | None = None
    ) -> None:
        self.run_refine, self.run_sequence = run_refine, run_sequence
        self.inputs = {**inputs, "intrinsics": inputs["intrinsics"][None].astype(np.float32)}
        camera = inputs["intrinsics"]
        self.focal = float(min(camera[0, 0], camera[1, 1]))

    def evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        outputs = self.run_refine({**self.inputs, "trajectory": theta[None].astype(np.float32)})
        loss = float(np.asarray(outputs["loss"]).reshape(-1)[0])
        gradient = np.asarray(outputs["gradient"], dtype=np.float64).reshape(theta.shape)
        return loss, gradient

    def loss(self, theta: np.ndarray) -> float:
        if self.run_sequence is None:
            return self.evaluate(theta)[0]
        feeds = {"sharp": self.inputs["latent"], "trajectory": theta[None].astype(np.float32)}
        outputs = self.run_sequence({**feeds, "intrinsics": self.inputs["intrinsics"]})
        residual = np.asarray(outputs["reblurred"], dtype=np.float64) - self.inputs["blurry"]
        mask = self.inputs["mask"]
        return float((mask * residual * residual).sum() / max(float(mask.sum()) * residual.shape[1], 1e-12))


@dataclass
class _Outcome:
    best: np.ndarray
    best_loss: float | None
    best_objective: float
    history: list[float]
    steps_run: int
    stopped: str


def _adam(
    level: _Level,
    start: np.ndarray,
    steps: int,
    step_size: float,
    prior: Callable[[np.ndarray], tuple[float, np.ndarray]],
    ceiling: float,
    initial: tuple[float, np.ndarray] | None = None,
) -> _Outcome:
    """Adam from `start` on one level: the best iterate by objective (loss + prior) among those with loss <=
    `ceiling`, the start included; `history` holds the loss of every evaluated iterate, the start first.
    `initial`: the start's (loss, gradient) when already known."""
    theta = start.copy()
    outcome = _Outcome(start.copy(), None, math.inf, [], 0, "steps")
    learning_rate = step_size / level.focal  # radians per step: step_size px at the focal length
    first, second = np.zeros_like(theta), np.zeros_like(theta)
    gradient, prior_gradient = first, first  # set by the evaluation of step 0
    for step in range(steps + 1):
        if step > 0:
            total = gradient + prior_gradient
            first = _BETA1 * first + (1 - _BETA1) * total
            second = _BETA2 * second + (1 - _BETA2) * total * total
            corrected = first / (1 - _BETA1**step)
            scale = np.sqrt(second / (1 - _BETA2**step)) + _ADAM_EPS
            theta = theta - learning_rate * corrected / scale
        if step == 0 and initial is not None:
            loss, gradient = initial
        elif steps == 0:  # only the loss is wanted
            loss, gradient = level.loss(theta), np.zeros_like(theta)
        else:
            loss, gradient = level.evaluate(theta)
        if not (math.isfinite(loss) and np.isfinite(gradient).all() and np.isfinite(theta).all()):
            outcome.stopped = "non-finite"
            break
        outcome.steps_run = step
        outcome.history.append(loss)
        prior_value, prior_gradient = prior(theta)
        if loss <= ceiling and loss + prior_value < outcome.best_objective:
            outcome.best, outcome.best_loss, outcome.best_objective = theta.copy(), loss, loss + prior_value
    return outcome


def _levels(scales: Sequence[float], steps: int | Sequence[int], height: int, width: int) -> list[tuple[float, int]]:
    """`_schedule` for this image: a level that would be smaller than `MIN_LEVEL_SIDE` px on a side is raised to
    that size (levels that meet are merged, their steps added), so small images refine at the coarsest useful
    resolution instead of failing."""
    smallest = min(1.0, MIN_LEVEL_SIDE / min(height, width))
    merged: dict[float, int] = {}
    for factor, count in _schedule(scales, steps):
        level = max(factor, smallest)
        merged[level] = merged.get(level, 0) + count
    return list(merged.items())


def _resized(inputs: dict[str, np.ndarray], factor: float) -> dict[str, np.ndarray]:
    """Images and mask area-averaged to `factor` of their size, and the intrinsics of the resized image.

    Pixel centres map as `x' = (x + 0.5) s - 0.5` with `s` the exact per-axis ratio of the sizes, so the focal
    length scales by `s` and the principal point follows the same map: the resized image sees the same rays.
    """
    height, width = inputs["blurry"].shape[-2:]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    scale_x, scale_y = size[0] / width, size[1] / height

    def shrink(batch: np.ndarray) -> np.ndarray:
        image = cv2.resize(batch[0].transpose(1, 2, 0), size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(image.reshape(size[1], size[0], -1).transpose(2, 0, 1)[None])

    camera = np.array(inputs["intrinsics"], dtype=np.float64, copy=True)
    camera[0, 0] *= scale_x
    camera[1, 1] *= scale_y
    camera[0, 2] = (camera[0, 2] + 0.5) * scale_x - 0.5
    camera[1, 2] = (camera[1, 2] + 0.5) * scale_y - 0.5
    return {
        "blurry": shrink(inputs["blurry"]),
        "latent": shrink(inputs["latent"]),
        "intrinsics": camera,
        "mask": shrink(inputs["mask"]),
    }


def _images(image: npt.ArrayLike, what: str) -> np.ndarray:
    """An HxWx3 or (1, 3, H, W) image as a contiguous `(1, 3, H, W)` float32 batch, checked."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 3 and array.shape[2] == 3:
        array = array.transpose(2, 0, 1)[None]
    elif not (array.ndim == 4 and array.shape[:2] == (1, 3)):
        raise ValueError(f"{what}: expected an HxWx3 RGB image (or a 1x3xHxW batch), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: the image holds NaN or infinite values")
    return np.ascontiguousarray(array)


def _trajectory(trajectory: npt.ArrayLike, n_positions: int | None) -> np.ndarray:
    poses = np.asarray(trajectory, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 3 or poses.shape[0] < 1:
        raise ValueError(f"a trajectory must be Px3 radians (pitch, yaw, roll), got shape {poses.shape}")
    if n_positions is not None and poses.shape[0] != n_positions:
        raise ValueError(f"a trajectory must have {n_positions} poses for this bundle, got {poses.shape[0]}")
    if not np.isfinite(poses).all():
        raise ValueError("the trajectory holds NaN or infinite values")
    return poses


def _camera(camera: npt.ArrayLike) -> np.ndarray:
    intrinsics = np.asarray(camera, dtype=np.float64)
    if intrinsics.shape != (3, 3) or not np.isfinite(intrinsics).all():
        raise ValueError(f"the camera must be a finite 3x3 intrinsic matrix, got shape {intrinsics.shape}")
    if not (intrinsics[0, 0] > 0 and intrinsics[1, 1] > 0):
        raise ValueError(
            f"focal length must be a positive number of pixels, got fx={intrinsics[0, 0]}, fy={intrinsics[1, 1]}"
        )
    return intrinsics


def _mask(mask: npt.ArrayLike | None, height: int, width: int) -> np.ndarray:
    if mask is None:
        return np.ones((1, 1, height, width), np.float32)
    weights = np.asarray(mask, dtype=np.float32)
    if weights.size != height * width or weights.ndim not in (2, 4) or weights.shape[-2:] != (height, width):
        raise ValueError(f"mask: expected HxW ({height}x{width}) or 1x1xHxW, got shape {weights.shape}")
    if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
        raise ValueError("mask: values must be finite, >= 0, and not all zero")
    return np.ascontiguousarray(weights.reshape(1, 1, height, width))
