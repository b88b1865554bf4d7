"""`python -m runtime.client`: deblur images and videos with a served bundle (`python -m runtime.serve`).

python -m runtime.client --url 127.0.0.1:8000 --concurrency 4 photo.jpg shots/ 'burst/*.png' clip.mp4 -o results/

Inputs are found, named and read as `python -m runtime.deblur` does, and each gets its main results in OUT/NAME:
an image its restored image (same bit depth, gray-ness and alpha as the input; the pixels travel as 8-bit RGB),
`trajectory.json` and `trajectory.csv`; a video its restored video and `trajectories.csv` (a camera is refused:
deblur it with `runtime.deblur`). Up to N requests are in flight at once (a video's frames too, which the server
batches). Each result folder is written whole or not at all (`runtime.io.results`). A failed input is reported in
one line and the rest go on.

Exit status: 0 all done; 1 done, but some input failed; 2 the run could not start (no server, no model, no output
folder); 130 or 143 stopped by Ctrl-C (SIGINT) or SIGTERM: the requests in flight end, the inputs at hand leave
nothing, the rest are skipped, and the summary says what was done.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from runtime.core import camera
from runtime.io.batch import (
    OUTPUTS,
    TRAJECTORY_COLUMNS,
    VIDEO_TRAJECTORY_COLUMNS,
    Options,
    Summary,
    focal_length_for,
    one_line,
    report,
    write_csv,
)
from runtime.io.media import (
    MediaError,
    VideoReader,
    VideoWriter,
    make_outdir,
    read_image,
    to_file_pixels,
    write_bytes,
    write_image,
)
from runtime.io.progress import Progress
from runtime.io.results import ResultFolder, protected_paths
from runtime.io.sources import Source, expand
from runtime.io.stopping import EXIT_CODES, Interrupted, StopRequest
from runtime.service import protocol
from runtime.service.connection import Connection, ServedError

#: The failures an input is expected to meet, said as they are (any other also names its type).
INPUT_ERRORS = (MediaError, ValueError, OSError, ServedError, cv2.error)


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m runtime.client",
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n")[-1].strip(),
    )
    parse.add_argument("inputs", nargs="+", metavar="INPUT", help="image, video, folder or glob")
    parse.add_argument("-o", "--outdir", type=Path, required=True, help="folder for the results (one sub-folder each)")
    parse.add_argument("--url", required=True, metavar="HOST:PORT", help="the server's HTTP port (gRPC's with --grpc)")
    parse.add_argument("--grpc", action="store_true", help="talk gRPC instead of HTTP")
    parse.add_argument("--concurrency", type=int, default=1, metavar="N", help="requests in flight at once (default 1)")
    return parse


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns its exit status (as `python -m runtime.deblur`'s)."""
    try:
        return _run(parser().parse_args(argv))
    except KeyboardInterrupt:  # while connecting: the run itself stops on its own
        print("interrupted by SIGINT before any input was processed", file=sys.stderr)
        return EXIT_CODES[signal.SIGINT]


def _run(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        print(f"error: --concurrency must be at least 1, got {args.concurrency}", file=sys.stderr)
        return 2
    try:
        connection = Connection(args.url, args.grpc)
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    reason = connection.not_ready()
    if reason is not None:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    try:
        make_outdir(args.outdir)
    except MediaError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sources, errors = expand(args.inputs)
    stop = StopRequest()
    with stop.handling_signals():
        summary = run(connection, sources, args.outdir, args.concurrency, stop=stop)
        failures = report(summary, errors, args.outdir)
    if stop.signum is not None:
        return EXIT_CODES[signal.Signals(stop.signum)]
    return 1 if failures else 0


def run(
    connection: Connection,
    sources: Sequence[Source],
    outdir: Path,
    concurrency: int = 1,
    progress: Callable[[str], None] | None = None,
    stop: StopRequest | None = None,
) -> Summary:
    """Deblur every source through the server, `concurrency` requests at a time, each into its result folder made
    whole (`runtime.io.results`); a failure is recorded with its reason and the other sources go on. A stop
    requested through `stop` (or a KeyboardInterrupt) lets the requests in flight end, keeps nothing of the
    sources at hand and skips the rest. Results are listed in the order of `sources`."""
    progress = progress or Progress()
    stop = stop or StopRequest()
    lock = threading.Lock()
    outcomes: dict[int, str | None] = {}
    inputs = protected_paths(source.location for source in sources if isinstance(source.location, Path))
    started = time.perf_counter()

    def finish(index: int, source: Source, error: Exception | None) -> None:
        with lock:
            outcomes[index] = None if error is None else _reason(error)
            state = "done" if error is None else "failed"
            progress(f"[{len(outcomes)}/{len(sources)}] {source.name} {state}")

    def process(index: int, source: Source) -> None:
        """One source into its result folder; a stop leaves it skipped."""
        try:
            stop.check()
            with ResultFolder(outdir, source.name, inputs, OUTPUTS) as target:
                if source.kind == "image":
                    _image(connection, source, target, stop.check)
                else:
                    told = functools.partial(_prefixed, progress, source.name)
                    _video(connection, pool, concurrency, source, target, told, stop.check)
        except Interrupted:
            return
        except Exception as error:  # this input failed; the others go on
            finish(index, source, error)
        else:
            finish(index, source, None)

    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="request")
    try:
        for index, source in enumerate(sources):
            if stop.requested:
                break
            if source.kind == "image":
                pool.submit(process, index, source)
            else:
                process(index, source)  # here: its frames go through the pool, in order
        pool.shutdown()
    except KeyboardInterrupt:  # no handler recorded the request: the queued requests are dropped
        stop.request(signal.SIGINT)
        pool.shutdown(cancel_futures=True)
    summary = Summary(seconds=time.perf_counter() - started)
    for index, source in enumerate(sources):
        if index not in outcomes:
            summary.skipped.append(source.name)
        elif outcomes[index] is None:
            summary.done.append(source.name)
        else:
            summary.failed.append((str(source.location), outcomes[index] or ""))
    summary.interrupted = stop.name
    if isinstance(progress, Progress):
        progress.done()
    return summary


def _image(connection: Connection, source: Source, target: Path, checkpoint: Callable[[], None]) -> None:
    """Restore one photo into `target`; `checkpoint` is called between steps (it raises to stop)."""
    assert isinstance(source.location, Path)
    picture = read_image(source.location)
    checkpoint()
    height, width = picture.rgb.shape[:2]
    focal_length, focal_length_source = focal_length_for(
        Options(target.parent), (height, width), 1.0, picture.exif_focal_length
    )
    started = time.perf_counter()
    outputs = connection.infer(protocol.request_arrays(picture.rgb, focal_length))
    seconds = time.perf_counter() - started
    checkpoint()
    restored = outputs[protocol.RESTORED][0].astype(np.float32) / np.float32(255)
    write_image(target / "restored.png", to_file_pixels(restored, picture))
    intrinsics = camera.intrinsics(height, width, focal_length)
    trajectory = outputs[protocol.TRAJECTORY][0]
    description = {
        "convention": "rotation vectors (pitch, yaw, roll) in radians, one per pose, in time order up to reversal",
        "focal_length_px": float(intrinsics[0, 0]),
        "focal_length_source": focal_length_source,
        "principal_point_px": [float(intrinsics[0, 2]), float(intrinsics[1, 2])],
        "image_size": {"width": width, "height": height},
        "undistorted": None,
        "poses": trajectory.astype(float).tolist(),
        "trajectory_source": "estimated by the trajectory net",
        "rolling_shutter": False,
        "served_by": f"{connection.name} model {protocol.MODEL_NAME}",
        "timings_s": {"request": seconds},
    }
    write_bytes(target / "trajectory.json", (json.dumps(description, indent=2) + "\n").encode())
    rows = [
        [pose, *map(float, angles), float(intrinsics[0, 0]), width, height] for pose, angles in enumerate(trajectory)
    ]
    write_csv(target / "trajectory.csv", TRAJECTORY_COLUMNS, rows)


def _video(
    connection: Connection,
    pool: ThreadPoolExecutor,
    window: int,
    source: Source,
    target: Path,
    progress: Callable[[str], object],
    checkpoint: Callable[[], None],
) -> None:
    """A video's frames through the server, up to `window` in flight, written in order as they come back (each
    told to `progress`); `checkpoint` is called before each frame (it raises to stop)."""
    if source.kind == "camera":
        raise MediaError(f"camera {source.location}: the client sends files; deblur a camera with runtime.deblur")
    reader = VideoReader(source.location)
    writer: VideoWriter | None = None
    rows: list[list[object]] = []
    pending: collections.deque[tuple[int, Future[dict[str, np.ndarray]]]] = collections.deque()

    def write_next() -> None:
        nonlocal writer
        number, future = pending.popleft()
        try:
            outputs = future.result()
        except ServedError as error:
            raise ServedError(f"frame {number}: {error}") from None
        restored = np.ascontiguousarray(outputs[protocol.RESTORED][0, ..., ::-1])
        if writer is None:
            writer = VideoWriter(target / "restored.mp4", reader.fps, (restored.shape[1], restored.shape[0]))
        writer.write(restored)
        focal_length = float(max(restored.shape[:2]))
        rows.extend(
            [number, pose, *map(float, angles), focal_length]
            for pose, angles in enumerate(outputs[protocol.TRAJECTORY][0])
        )
        total = f"/{reader.frame_count}" if reader.frame_count else ""
        progress(f"frame {number + 1}{total}")

    try:
        for number, frame in enumerate(reader):
            checkpoint()
            arrays = protocol.request_arrays(np.ascontiguousarray(frame[..., ::-1]))
            pending.append((number, pool.submit(connection.infer, arrays)))
            if len(pending) >= window:
                write_next()
        while pending:
            write_next()
    except BaseException:
        for _, future in pending:
            future.cancel()
        if writer is not None:
            writer.abort()
        raise
    finally:
        reader.close()
    if writer is None:
        raise MediaError(f"{source.location}: no frames could be read")
    writer.close()
    write_csv(target / "trajectories.csv", VIDEO_TRAJECTORY_COLUMNS, rows)


def _prefixed(progress: Callable[[str], object], label: str, text: str) -> None:
    progress(f"{label} {text}")


def _reason(error: Exception) -> str:
    """One line for a failed input; an unexpected error also names its type."""
    text = one_line(str(error))
    return text if isinstance(error, INPUT_ERRORS) else f"{type(error).__name__}: {text}"
