"""`Deblurrer`: the object a capture app feeds frames to. One bundle, one backend, torch-free.

    with Deblurrer("runtime/bundles/demo", BackendSettings("ort-cpu")) as deblurrer:
        result = deblurrer(frame_bgr)          # HxWx3 uint8, OpenCV's convention
        cv2.imwrite("restored.png", result.restored)

The Deblurrer holds the state: the bundle, its runners, its input buffer, its settings (`BackendSettings`: where
the graphs run; `RestoreSettings`: how an image is restored; `RefineSettings`: whether and how the trajectory is
refined) and the tiling warning it says once. The work is the pipeline's steps (`runtime.core.pipeline`: estimate,
restore, sequence, refine), plain functions each method hands its state to. It builds no TensorRT engine: that is
`runtime.core.backends.tensorrt_build`'s, run before (`python -m runtime.deblur --rebuild`).

Not thread-safe: a Deblurrer reuses its input buffers and, on TensorRT, its device buffers and stream. Use one
per thread (they can share a bundle directory).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from runtime.core import pipeline
from runtime.core.backends import BackendSettings, load_runners
from runtime.core.backends.base import Runner
from runtime.core.bundle import Bundle, load_bundle
from runtime.core.motion import Trajectory
from runtime.core.pipeline import DEFAULT_TILE_SIDE, DeblurResult, Progress, RestoreSettings
from runtime.core.refine import RefineSettings

__all__ = [
    "DEFAULT_TILE_SIDE",
    "NET_ROLES",
    "DeblurResult",
    "Deblurrer",
    "RestoreSettings",
    "add_estimation_argument",
    "add_restore_arguments",
    "refine_roles",
    "restore_settings",
]

#: The nets' graphs, loaded at the Deblurrer's precision.
NET_ROLES = ("trajectory", "restoration", "sequence")


def refine_roles(precision: str) -> tuple[str, ...]:
    """The graphs a refining Deblurrer loads in FP32 beside the nets (see precisions.FP32_ONLY_ROLES): the refine
    graph, and an FP32 sequence graph for the loss-only evaluations unless the nets' one is already FP32."""
    return ("refine",) if precision == "fp32" else ("refine", "sequence")


def load_graphs(
    bundle: Bundle, backend: BackendSettings, refine: RefineSettings | None, log: Callable[[str], object]
) -> tuple[str, dict[str, Runner], dict[str, Runner]]:
    """The backend chosen, the nets' runners (`NET_ROLES`) and, when refining, the refinement's (refine, sequence)
    on the same backend in FP32 whatever the nets' precision. Refuses a precision whose variant failed its accuracy
    gate unless `backend.force_precision`, and refinement with no refine graph in the bundle."""
    failure = bundle.gate_failure(backend.precision)
    if failure is not None and not backend.force_precision:
        raise ValueError(f"{failure}; pass --force-precision (force_precision=True) to run them anyway")
    if refine is not None and "refine" not in bundle.manifest["graphs"]:
        raise ValueError(
            f"{bundle.path}: the bundle has no refine graph; add it with python -m export.refine {bundle.path}"
        )
    chosen, runners = load_runners(bundle, NET_ROLES, backend, log)
    if refine is None:
        return chosen, runners, {}
    fp32 = replace(backend, name=chosen, precision="fp32")
    try:
        _, fp32_runners = load_runners(bundle, refine_roles(backend.precision), fp32, log)
    except BaseException:
        for runner in runners.values():
            runner.close()
        raise
    return chosen, runners, {"sequence": runners["sequence"], **fp32_runners}


class Deblurrer:
    """Deblur frames with a bundle on one backend (`auto`: the fastest available, said once through `log`).

    `backend` says where the graphs run, `restore` how each image is restored, `refine` (None: not at all) how
    each trajectory is then refined on the reblur error of the restored image (`runtime.core.refine`; the bundle
    needs its `refine` graph). A precision whose variant failed its accuracy gate is refused unless
    `backend.force_precision`. `log` is told the backend `auto` chose and any tiling warning.
    """

    def __init__(
        self,
        bundle: str | Path | Bundle,
        backend: BackendSettings = BackendSettings(),
        restore: RestoreSettings = RestoreSettings(),
        refine: RefineSettings | None = None,
        log: Callable[[str], object] = print,
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.backend_settings = backend
        self.restore_settings = restore
        self.refine = refine
        self.log = log
        pipeline.check_restore_settings(restore, self.bundle)
        #: The backend the graphs run on (the one `auto` chose); the nets' runners, and the refinement's.
        self.backend, self._runners, self._refine_runners = load_graphs(self.bundle, backend, refine, log)
        #: The frames' input buffer, reused while the frame size stays the same.
        self._batch: np.ndarray | None = None
        #: Where a margin the tiles cannot hold is said: once per Deblurrer.
        self._warn = pipeline.say_once(log)

    def __call__(self, frame: np.ndarray, trajectory: Trajectory | None = None) -> DeblurResult:
        """Deblur one HxWx3 uint8 BGR frame; the restored frame comes back the same way (rounded, clipped).

        The frame goes to the nets as RGB `frame / 255` in float32, through a buffer reused while the size stays.
        A known `trajectory` (e.g. `runtime.core.motion.exposure_motion` of the frame's exposure in a gyroscope log)
        skips the trajectory net, as in `restore`.
        """
        self._batch = pipeline.frame_batch(frame, pipeline.min_side(self.bundle), self._batch)
        result = self._restore(self._batch, None, trajectory)
        return replace(result, restored=pipeline.frame_pixels(result.restored))

    def restore(
        self,
        image: np.ndarray,
        focal_length: float | None = None,
        trajectory: Trajectory | None = None,
        refine: bool = True,
        progress: Callable[[str], object] | None = None,
    ) -> DeblurResult:
        """Deblur an HxWx3 float32 RGB image in [0, 1]; the restored image is float32 RGB, not clipped.

        `focal_length` (px) overrides the Deblurrer's for this image. A known `trajectory` `(P, 3)` radians (from
        a gyroscope, or an earlier estimate) skips the trajectory net (and is refined when the Deblurrer refines);
        a `RowMotion` (a rolling shutter: one trajectory per row) is restored in horizontal bands, each with its
        middle row's trajectory, and is not refined.
        `refine=False` skips this Deblurrer's refinement for this image; `refine_result` can add it afterwards,
        so a caller that wants both results restores only once. `progress`, when given, is told each tile of a
        tiled restoration as it starts (`restoring: tile 3/12`): a large image takes minutes on a CPU.
        """
        batch = pipeline.rgb_batch(image, pipeline.min_side(self.bundle))
        result = self._restore(batch, focal_length, trajectory, refine, progress or pipeline.silent)
        return replace(result, restored=pipeline.rgb_image(result.restored))

    def estimate_trajectory(
        self, image: np.ndarray, focal_length: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The trajectory net's estimate `(P, 3)` radians for an HxWx3 float32 RGB image, and the intrinsics
        `(3, 3)` it was made with, without restoring (nor refining) the image."""
        min_side = pipeline.min_side(self.bundle)
        batch = pipeline.rgb_batch(image, min_side)
        camera = pipeline.image_camera(batch, focal_length, self.restore_settings)
        runner, estimation_side = self._runners["trajectory"], self.restore_settings.estimation_side
        return pipeline.estimate(runner, batch, camera, estimation_side, min_side)[0], camera

    def refine_result(self, image: np.ndarray, result: DeblurResult) -> DeblurResult:
        """Refine the trajectory of an unrefined `result` of `restore(image, refine=False)`, with this Deblurrer's
        refine settings (and re-run the restoration if they ask for it)."""
        if self.refine is None:
            raise ValueError("this Deblurrer does not refine: create it with refine=RefineSettings(...)")
        batch, unrefined = pipeline.unrefined(
            image, result, min_side_px=pipeline.min_side(self.bundle), n_positions=self.bundle.n_positions
        )
        refined = self._refined(batch, unrefined)
        return replace(refined, restored=pipeline.rgb_image(refined.restored))

    def sequence(
        self, sharp: np.ndarray, trajectory: Trajectory, camera: np.ndarray, eight_bit: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sharp frames `(P, H, W, 3)` of an HxWx3 float32 RGB image under a trajectory (or one per row), and
        their mean. `eight_bit` gives the frames as uint8, rounded tile by tile as they are made: a quarter of
        the memory of the float frames (P times the image's), for frames that are only to be written."""
        runner, bundle, settings = self._runners["sequence"], self.bundle, self.restore_settings
        return pipeline.sequence(
            sharp, trajectory, camera, runner=runner, bundle=bundle, settings=settings, eight_bit=eight_bit
        )

    def reblur(self, sharp: np.ndarray, trajectory: Trajectory, camera: np.ndarray) -> np.ndarray:
        """An HxWx3 float32 RGB image blurred by a trajectory or one per row (the mean of its sharp frames, which
        are not kept)."""
        runner, bundle, settings = self._runners["sequence"], self.bundle, self.restore_settings
        return pipeline.reblur(sharp, trajectory, camera, runner=runner, bundle=bundle, settings=settings)

    def close(self) -> None:
        for runner in (*self._runners.values(), *self._refine_runners.values()):  # closing twice is harmless
            runner.close()

    def __enter__(self) -> Deblurrer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _restore(
        self,
        batch: np.ndarray,
        focal_length: float | None,
        trajectory: Trajectory | None,
        refine: bool = True,
        progress: Progress = pipeline.silent,
    ) -> DeblurResult:
        """Restore a batch, refined when the Deblurrer refines and `refine` allows; `restored` is the batch."""
        camera = pipeline.image_camera(batch, focal_length, self.restore_settings)
        result = pipeline.restore(
            batch,
            camera,
            trajectory,
            runners=self._runners,
            bundle=self.bundle,
            settings=self.restore_settings,
            warn=self._warn,
            progress=progress,
        )
        if self.refine is None or not refine or result.row_motion is not None:
            return result
        return self._refined(batch, result, progress)

    def _refined(self, batch: np.ndarray, result: DeblurResult, progress: Progress = pipeline.silent) -> DeblurResult:
        """An unrefined result of restoring `batch` (`restored` a batch), refined with this Deblurrer's settings."""
        assert self.refine is not None
        return pipeline.refine(
            batch,
            result,
            runners=self._runners,
            refine_runners=self._refine_runners,
            bundle=self.bundle,
            restore_settings=self.restore_settings,
            refine_settings=self.refine,
            warn=self._warn,
            progress=progress,
        )


def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    """`--sigma`, `--tile-side` and `--estimation-side`: the `RestoreSettings` of the commands that restore images
    (`restore_settings` reads them back)."""
    parser.add_argument("--sigma", type=float, help="noise level for the restoration (default: the bundle's)")
    parser.add_argument(
        "--tile-side",
        type=int,
        default=DEFAULT_TILE_SIDE,
        help=f"restore images with a longer side above this in tiles (default {DEFAULT_TILE_SIDE}; 0: never tile)",
    )
    add_estimation_argument(parser)


def restore_settings(args: argparse.Namespace) -> RestoreSettings:
    """The `RestoreSettings` of the options `add_restore_arguments` added."""
    return RestoreSettings(sigma=args.sigma, tile_side=args.tile_side or None, estimation_side=args.estimation_side)


def add_estimation_argument(parser: argparse.ArgumentParser) -> None:
    """`--estimation-side PX`: `RestoreSettings.estimation_side`, for the commands that make a Deblurrer."""
    parser.add_argument(
        "--estimation-side",
        type=int,
        metavar="PX",
        help="run the trajectory net on a copy of each image shrunk to at most PX on its longer side "
        "(default: full resolution)",
    )
