"""`python -m runtime.service.benchmark`: the served pipeline's throughput and latency against the in-process one's.

python -m runtime.service.benchmark --engine runtime/bundles/demo --size 256x256 --requests 40 --threads 2

Both restore the same image with the same bundle, backend, precision and threads on this machine, one after the
other: first one `Deblurrer` in this process (the server's work per request: check, restore, round to uint8),
then a server (`python -m runtime.serve`, one instance; or the one at `--url`, with its own settings) answering
`--concurrency` client threads. Each side runs two requests first to warm up. Markdown on stdout.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.core.backends import BackendSettings, add_backend_arguments, backend_settings
from runtime.core.backends.base import BackendError
from runtime.core.bundle import BundleError, load_bundle
from runtime.core.deblurrer import Deblurrer
from runtime.service import protocol
from runtime.service.connection import Connection, ServedError
from runtime.service.process import ServerError, running_server

#: The demo bundle shipped with the project, the default --engine.
DEMO_BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "demo"
WARMUP_REQUESTS = 2


@dataclass(frozen=True)
class Measurement:
    """One side's run: what it was, how many requests at once, the seconds from first to last, and each
    request's latency in seconds."""

    name: str
    concurrency: int
    seconds: float
    latencies: Sequence[float]

    @property
    def throughput(self) -> float:
        """Images per second."""
        return len(self.latencies) / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies), q) * 1000)


def size(text: str) -> tuple[int, int]:
    """`WIDTHxHEIGHT`, as argparse reads --size."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"expected positive sides, got {text!r}")
    return width, height


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m runtime.service.benchmark", description=__doc__.splitlines()[0])
    parse.add_argument("--engine", type=Path, default=DEMO_BUNDLE, help="bundle directory (default: the demo bundle)")
    parse.add_argument("--size", type=size, default=(256, 256), metavar="WxH", help="image size (default 256x256)")
    parse.add_argument("--requests", type=int, default=40, metavar="N", help="requests measured (default 40)")
    parse.add_argument("--concurrency", type=int, default=2, metavar="C", help="client threads (default 2)")
    add_backend_arguments(parse)
    parse.add_argument("--url", metavar="HOST:PORT", help="measure this running server instead of starting one")
    parse.add_argument("--grpc", action="store_true", help="talk gRPC instead of HTTP")
    return parse


def sample_image(width: int, height: int) -> np.ndarray:
    """An HxWx3 uint8 RGB image, smooth like a photograph (the time does not depend on the content)."""
    coarse = np.random.default_rng(0).random((height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.round(np.clip(smooth, 0, 1) * 255).astype(np.uint8)


def in_process(deblurrer: Deblurrer, arrays: dict[str, np.ndarray], requests: int) -> Measurement:
    """The server's work per request, done here one request after another."""
    min_side = int(deblurrer.bundle.manifest.get("min_side", 32))

    def answer() -> None:
        for frame in protocol.frames(arrays, min_side, deblurrer.bundle.n_positions):
            result = deblurrer.restore(frame.rgb, frame.focal_length, trajectory=frame.trajectory)
            protocol.response([result.restored], [result.trajectory])

    return _measure("in-process Deblurrer", answer, requests, 1)


def served(connection: Connection, arrays: dict[str, np.ndarray], requests: int, concurrency: int) -> Measurement:
    """The same requests sent to the server from `concurrency` threads."""
    protocol_name = "gRPC" if connection.grpc else "HTTP"
    return _measure(f"served, {protocol_name}", lambda: connection.infer(arrays), requests, concurrency)


def _measure(name: str, answer: Callable[[], object], requests: int, concurrency: int) -> Measurement:
    """Run `answer` `requests` times from `concurrency` threads after the warm-up; errors end the measurement."""
    for _ in range(WARMUP_REQUESTS):
        answer()
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    remaining = [requests]

    def work() -> None:
        while True:
            with lock:
                if remaining[0] == 0 or errors:
                    return
                remaining[0] -= 1
            started = time.perf_counter()
            try:
                answer()
            except Exception as error:  # said once the threads are done
                with lock:
                    errors.append(error)
                return
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=work, name=f"client-{index}") for index in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    return Measurement(name, concurrency, seconds, latencies)


def report(command: str, title: str, measurements: Sequence[Measurement]) -> str:
    """The Markdown table of the measurements, the command that made it, and the served/in-process ratio."""
    lines = [
        f"# {title}",
        "",
        f"`{command}`",
        "",
        "| pipeline | requests | concurrency | throughput (images/s) | p50 latency (ms) | p99 latency (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for each in measurements:
        lines.append(
            f"| {each.name} | {len(each.latencies)} | {each.concurrency} | {each.throughput:.2f} "
            f"| {each.percentile_ms(50):.0f} | {each.percentile_ms(99):.0f} |"
        )
    if len(measurements) == 2:
        ratio = measurements[1].throughput / measurements[0].throughput
        lines += ["", f"Served throughput: {ratio:.2f}x in-process."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(arguments)
    for option, value in (("--requests", args.requests), ("--concurrency", args.concurrency)):
        if value < 1:
            print(f"error: {option} must be at least 1, got {value}", file=sys.stderr)
            return 2
    width, height = args.size
    arrays = protocol.request_arrays(sample_image(width, height))
    try:
        bundle = load_bundle(args.engine)
        backend = backend_settings(args)
        with Deblurrer(bundle, backend, log=_stderr) as deblurrer:
            chosen = deblurrer.backend
            _stderr(f"in process: {args.requests} requests of {width}x{height} on {chosen}")
            local = in_process(deblurrer, arrays, args.requests)
    except (BundleError, BackendError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    threads = "one per core" if args.threads is None else f"{args.threads} threads"
    title = f"Served vs in-process: {bundle.path.name}, {width}x{height}, {chosen}, {args.precision}, {threads}"
    command = shlex.join(["python", "-m", "runtime.service.benchmark", *arguments])
    try:
        if args.url:
            remote = _served_by(Connection(args.url, args.grpc), arrays, args)
        else:
            remote = _served_here(bundle.path, BackendSettings(chosen, args.precision), arrays, args)
    except (ServerError, ServedError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report(command, title, [local, remote]), end="")
    return 0


def _served_by(connection: Connection, arrays: dict[str, np.ndarray], args: argparse.Namespace) -> Measurement:
    reason = connection.not_ready()
    if reason is not None:
        raise ServedError(reason)
    _stderr(f"served: {args.requests} requests from {args.concurrency} threads to {connection.name}")
    return served(connection, arrays, args.requests, args.concurrency)


def _served_here(
    engine: Path, backend: BackendSettings, arrays: dict[str, np.ndarray], args: argparse.Namespace
) -> Measurement:
    """Start a server of `engine` with the in-process side's settings, measure it, stop it."""
    options = ["--backend", backend.name, "--precision", backend.precision, "--max-batch", str(args.concurrency)]
    options += ["--force-precision"] if args.force_precision else []
    options += [] if args.threads is None else ["--threads", str(args.threads)]
    with tempfile.TemporaryDirectory(prefix="serve-benchmark-") as folder:
        _stderr("starting a server: " + " ".join(options))
        with running_server(engine, options, Path(folder) / "server.log") as server:
            connection = Connection(server.grpc_url if args.grpc else server.http_url, args.grpc)
            _stderr(f"served: {args.requests} requests from {args.concurrency} threads to {connection.name}")
            return served(connection, arrays, args.requests, args.concurrency)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
