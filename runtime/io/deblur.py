"""`python -m runtime.deblur`: deblur images, folders, globs, videos or a camera with a bundle. Torch-free.

python -m runtime.deblur --engine BUNDLE photo.jpg shots/ 'burst/*.png' clip.mp4 -o results/
python -m runtime.deblur --engine BUNDLE shots/ -o results/ --ray local --workers 4   # on a Ray cluster

Exit status: 0 all done; 1 done, but some input failed (one line each at the end); 2 the run could not start;
130 or 143 stopped by Ctrl-C (SIGINT) or SIGTERM, after the current write: the summary says what was done.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from runtime.core.backends import BackendSettings, add_backend_arguments, backend_settings, tensorrt
from runtime.core.backends.base import BackendError
from runtime.core.backends.tensorrt_build import rebuild_stale
from runtime.core.bundle import Bundle, BundleError, load_bundle
from runtime.core.deblurrer import (
    NET_ROLES,
    Deblurrer,
    add_restore_arguments,
    refine_roles,
    restore_settings,
)
from runtime.core.limits import FOCAL_LENGTH_PX, SIGMA
from runtime.core.motion import (
    CAMERA_AXES,
    GyroMotion,
    KnownMotion,
    TrajectoryFile,
    add_gyro_axes_argument,
    in_camera_axes,
    read_frame_times,
    read_gyro_log,
    read_trajectory,
)
from runtime.core.profiles import ProfileError, load_build_profile
from runtime.core.refine import add_refine_arguments, refine_settings
from runtime.io import ray_batch
from runtime.io.batch import Options, report, run_batch
from runtime.io.media import make_outdir
from runtime.io.presets import read_camera_preset
from runtime.io.ray_batch import ClusterError, WorkerSettings
from runtime.io.sources import expand
from runtime.io.stopping import EXIT_CODES, StopRequest

#: The compact demo bundle shipped with the project, used when --engine is not given.
DEMO_BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "demo"


def known_motion(args: argparse.Namespace, n_poses: int) -> KnownMotion | None:
    """The camera motion the options give (--trajectory, or --gyro with its timing and axes), or None: estimate it."""
    for option, value in (
        ("--exposure", args.exposure),
        ("--readout-time", args.readout_time),
        ("--frame-times", args.frame_times),
        ("--gyro-axes", None if args.gyro_axes == CAMERA_AXES else args.gyro_axes),
    ):
        if value is not None and args.gyro is None:
            raise ValueError(f"{option} goes with --gyro")
    if args.readout_time is not None and not math.isfinite(args.readout_time):
        raise ValueError(f"--readout-time must be a finite number of seconds, got {args.readout_time}")
    if args.trajectory is not None:
        return TrajectoryFile(args.trajectory, read_trajectory(args.trajectory, n_poses))
    if args.gyro is None:
        return None
    start, duration = args.exposure if args.exposure is not None else (None, None)
    frame_times = read_frame_times(args.frame_times) if args.frame_times is not None else None
    log = in_camera_axes(read_gyro_log(args.gyro), args.gyro_axes)
    readout = args.readout_time if args.readout_time is not None else log.readout_s or 0.0
    readouts = [readout]
    if frame_times is not None and frame_times.readout_s is not None:
        readouts += frame_times.readout_s.tolist()
    if any(readouts) and args.refine is not None:
        stated = "" if args.readout_time is not None or not log.readout_s else " (the log states one; --readout-time 0)"
        raise ValueError(f"--refine refines one trajectory; a rolling shutter's readout gives one per row{stated}")
    return GyroMotion(args.gyro, log, n_poses, start, duration, readout, frame_times)


def rebuild_engines(bundle: Bundle, backend: BackendSettings, refining: bool, log: Callable[[str], object]) -> Bundle:
    """`--rebuild`: where TensorRT can run, build the engines a Deblurrer with these settings loads that are missing
    or were built for another GPU, TensorRT or graph (with the settings' profile, else the one each was built
    with); returns the re-read bundle.

    Elsewhere nothing is built: `auto` then runs on another backend, and `tensorrt` is refused as it loads. A build
    that fails is that refusal under `tensorrt`; under `auto` it is said through `log` and another backend runs.
    """
    if backend.name not in ("auto", "tensorrt") or tensorrt.unavailable_reason() is not None:
        return bundle
    loads: list[tuple[str, tuple[str, ...]]] = [(backend.precision, NET_ROLES)]
    if refining and "refine" in bundle.manifest["graphs"]:  # else the Deblurrer says the graph is missing
        loads.append(("fp32", refine_roles(backend.precision)))
    try:
        for precision, roles in loads:
            bundle = rebuild_stale(bundle, list(roles), precision, backend.profile, log)
    except BackendError as error:
        if backend.name == "tensorrt":
            raise BackendError(f"backend tensorrt cannot run here: {error}") from None
        log(f"tensorrt engines not rebuilt: {error}")
    return bundle


def exposure(text: str) -> tuple[float, float]:
    """`START,DURATION` in seconds, as argparse reads --exposure."""
    try:
        start, duration = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START,DURATION in seconds, got {text!r}") from None
    if not (math.isfinite(start) and math.isfinite(duration) and duration > 0):
        raise argparse.ArgumentTypeError(f"expected a finite start and a positive duration, got {text!r}")
    return start, duration


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse meaningless numbers before anything is loaded; one line each."""
    checks = [
        (args.focal_length, "--focal-length", "a positive number of pixels", lambda v: math.isfinite(v) and v > 0),
        (args.scale, "--scale", "a positive factor", lambda v: math.isfinite(v) and v > 0),
        (args.max_side, "--max-side", "at least 1 pixel", lambda v: v >= 1),
        (args.sigma, "--sigma", "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0),
        (args.max_frames, "--max-frames", "at least 1", lambda v: v >= 1),
        (args.workers, "--workers", "at least 1", lambda v: v >= 1),
    ]
    for value, name, expected, valid in checks:
        if value is not None and not valid(value):
            raise ValueError(f"{name} must be {expected}, got {value}")
    for value, name, limit in [(args.focal_length, "--focal-length", FOCAL_LENGTH_PX), (args.sigma, "--sigma", SIGMA)]:
        if value is not None:
            limit.check(value, name)
    if args.workers is not None and args.ray is None:
        raise ValueError("--workers goes with --ray")


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m runtime.deblur",
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n")[-1].strip(),
    )
    parse.add_argument("inputs", nargs="+", metavar="INPUT", help="image, video, folder, glob or camera index")
    parse.add_argument("-o", "--outdir", type=Path, required=True, help="folder for the results (one sub-folder each)")
    parse.add_argument("--engine", type=Path, default=None, help="bundle directory (default: the shipped demo bundle)")
    add_backend_arguments(parse)
    parse.add_argument(
        "--profile", type=Path, help="build profile YAML: shape profile for ort-tensorrt, engine profile for --rebuild"
    )
    parse.add_argument(
        "--rebuild",
        action="store_true",
        help="build TensorRT engines that are missing or were built for another GPU or TensorRT, then run",
    )
    camera = parse.add_mutually_exclusive_group()
    camera.add_argument(
        "--focal-length",
        type=float,
        metavar="PX",
        help="focal length in pixels of the input (default: the photo's EXIF, else the longer side)",
    )
    camera.add_argument(
        "--camera",
        type=Path,
        metavar="YAML",
        help="camera preset (configs/cameras/NAME.yaml) or Gyroflow lens profile (JSON): its focal length, and its "
        "lens undistorted if it has one",
    )
    size = parse.add_mutually_exclusive_group()
    size.add_argument("--max-side", type=int, metavar="PX", help="shrink inputs whose longer side is larger")
    size.add_argument("--scale", type=float, help="resize inputs by this factor")
    add_restore_arguments(parse)
    known = parse.add_argument_group("known camera motion (skips the trajectory net)")
    motion = known.add_mutually_exclusive_group()
    motion.add_argument(
        "--trajectory",
        type=Path,
        metavar="FILE",
        help="the motion of the photos: a trajectory.json/.csv written by this command, or a recorded path "
        "(the authors' 6-column format, or 3 columns of angles)",
    )
    motion.add_argument(
        "--gyro",
        type=Path,
        metavar="LOG",
        help="gyroscope log: CSV rows time_s,x,y,z (rad/s; see --gyro-axes) or a Gyroflow .gcsv",
    )
    add_gyro_axes_argument(known)
    timing = known.add_mutually_exclusive_group()
    timing.add_argument(
        "--exposure",
        type=exposure,
        metavar="START,DURATION",
        help="the exposure in the gyroscope log's clock, in seconds (photos default to the whole log); "
        "a video frame's starts at START + its timestamp in the video",
    )
    timing.add_argument(
        "--frame-times",
        type=Path,
        metavar="CSV",
        help="each frame's exposure in the log's clock, as the camera's metadata gives it: columns "
        "exposure_start_s, exposure_s and optionally readout_s, one row per frame (a photo: its row)",
    )
    known.add_argument(
        "--readout-time",
        type=float,
        metavar="S",
        help="rolling shutter: seconds from the top row's exposure start to the bottom row's (with --gyro; "
        "negative: the bottom row is read first; the image is then restored in bands, each with its rows' motion; "
        "default: the log's, as a .gcsv states it)",
    )
    parse.add_argument("--sequence", action="store_true", help="also write the sharp frames (PNGs, GIF, MP4)")
    parse.add_argument("--timings", action="store_true", help="print per-stage times for each image")
    parse.add_argument("--max-frames", type=int, metavar="N", help="stop videos and cameras after N frames")
    parse.add_argument(
        "--skip-done",
        action=argparse.BooleanOptionalAction,
        help="leave an input whose result folder already holds every file this run writes, one line each, so a "
        "re-run does what is missing or failed (default: on with --ray, whose batches resume; otherwise off: the "
        "folder is replaced)",
    )
    add_refine_arguments(parse)
    cluster = parse.add_argument_group(
        f"Ray cluster ({ray_batch.INSTALL})",
        "Each input goes whole to one worker, which writes its result folder as a plain run does; a video to one "
        "worker, frame after frame; cameras are refused. Workers on other machines need this project installed and "
        "must see the bundle, the inputs and the output folder at the same paths (a shared file system). Each "
        "worker's backend runs --threads threads (default 1 with --ray) and reserves as many CPUs. Ctrl-C or "
        "SIGTERM stops handing inputs out: those in flight are finished.",
    )
    cluster.add_argument(
        "--ray",
        metavar="ADDRESS|local",
        help="spread the inputs over Ray workers, one Deblurrer each: 'local' starts a cluster on this machine, an "
        "address (host:port, auto) joins a running one",
    )
    cluster.add_argument(
        "--workers", type=int, metavar="N", help="how many Ray workers (default: the cluster's CPUs / --threads)"
    )
    return parse


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns its exit status (see the module's docstring)."""
    try:
        return _run(parser().parse_args(argv))
    except KeyboardInterrupt:  # while loading: the batch itself stops on its own
        print("interrupted by SIGINT before any input was processed", file=sys.stderr)
        return EXIT_CODES[signal.SIGINT]


def _run(args: argparse.Namespace) -> int:
    bundle = args.engine or DEMO_BUNDLE
    if args.engine is None and not DEMO_BUNDLE.exists():
        print(f"error: no --engine given and the demo bundle {DEMO_BUNDLE} is missing", file=sys.stderr)
        return 2
    deblurrer: Deblurrer | None = None
    try:
        _check_arguments(args)
        if args.ray is not None:
            ray_batch.require_ray()
        loaded = load_bundle(bundle)
        options = Options(
            outdir=args.outdir,
            focal_length=args.focal_length,
            camera_preset=read_camera_preset(args.camera) if args.camera else None,
            max_side=args.max_side,
            scale=args.scale,
            sequence=args.sequence,
            timings=args.timings,
            max_frames=args.max_frames,
            motion=known_motion(args, loaded.n_positions),
            skip_done=args.ray is not None if args.skip_done is None else args.skip_done,
        )
        backend = backend_settings(args, load_build_profile(args.profile) if args.profile else None)
        if args.ray is not None and backend.threads is None:
            backend = dataclasses.replace(backend, threads=1)
        restore = restore_settings(args)
        refine = refine_settings(args)
        if args.rebuild:
            loaded = rebuild_engines(loaded, backend, refine is not None, _stderr)
        if args.ray is None:
            deblurrer = Deblurrer(loaded, backend, restore, refine, log=_stderr)
    except (BundleError, BackendError, ProfileError, ValueError, ClusterError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sources, errors = expand(args.inputs)
    try:
        cameras = [source for source in sources if source.kind == "camera"]
        if args.ray is not None and cameras:
            raise ValueError(f"camera {cameras[0].location}: cameras are not read through --ray; run without it")
        make_outdir(args.outdir)
    except ValueError as error:
        if deblurrer is not None:
            deblurrer.close()
        print(f"error: {error}", file=sys.stderr)
        return 2
    stop = StopRequest()
    with stop.handling_signals(), deblurrer or contextlib.nullcontext():
        if deblurrer is not None:
            summary = run_batch(deblurrer, sources, options, stop=stop)
        else:
            settings = WorkerSettings(bundle, backend, restore, refine, options)
            try:
                summary = ray_batch.run_on_cluster(
                    args.ray, args.workers, settings, sources, loaded.n_positions, stop, _stderr
                )
            except ClusterError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
        failures = report(summary, errors, args.outdir)
    if stop.signum is not None:
        return EXIT_CODES[signal.Signals(stop.signum)]
    return 1 if failures else 0


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
