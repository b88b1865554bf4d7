"""`python -m runtime.serve`: serve a bundle's whole Deblurrer pipeline as the Triton model `deblur` (PyTriton).

python -m runtime.serve --engine runtime/bundles/demo --http-port 8000 --grpc-port 8001 --metrics-port 8002

Each model instance owns one `Deblurrer` (it is not thread-safe) and restores the images of a batch one after
another: Triton batches requests of the same size (a video's frames) to save round trips, not to batch the nets.
Triton answers health and readiness (`/v2/health/live`, `/v2/health/ready`) and Prometheus metrics
(`/metrics` on the metrics port). SIGTERM or Ctrl-C stops the server once the requests in flight are answered.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.core.backends import add_backend_arguments, backend_settings
from runtime.core.backends.base import BackendError
from runtime.core.bundle import Bundle, BundleError, load_bundle
from runtime.core.deblurrer import Deblurrer, add_restore_arguments, restore_settings
from runtime.core.profiles import ProfileError, load_build_profile
from runtime.core.refine import add_refine_arguments, refine_settings
from runtime.service import protocol
from runtime.service.protocol import RequestError, TensorSpec

#: Seconds Triton waits for the requests in flight when stopping; unloading the model takes a few more.
EXIT_TIMEOUT_S = 20
#: Seconds between checks that Triton is still alive while serving.
WATCH_PERIOD_S = 1.0

Log = Callable[[str], object]
InferFunction = Callable[[list[Any]], list[dict[str, np.ndarray]]]


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m runtime.serve", description=__doc__.splitlines()[0])
    parse.add_argument("--engine", type=Path, required=True, help="bundle directory")
    parse.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: all)")
    parse.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port (default 8000)")
    parse.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    parse.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default 8002)")
    add_backend_arguments(parse)
    parse.add_argument("--profile", type=Path, help="build profile YAML: the shape profile of ort-tensorrt")
    parse.add_argument(
        "--max-batch",
        type=int,
        default=1,
        metavar="N",
        help="most requests of one size batched together (default 1: every request answered on its own). Triton "
        "fails a whole batch when one of its requests is refused, so batch only clients that trust each other, "
        "such as the frames of one video",
    )
    parse.add_argument(
        "--instances",
        type=int,
        default=1,
        metavar="N",
        help="model instances, one Deblurrer each with --threads CPU threads (default 1)",
    )
    add_restore_arguments(parse)
    add_refine_arguments(parse)
    return parse


def infer_function(deblurrer: Deblurrer, log: Log) -> InferFunction:
    """The inference callable of one model instance: every request of a batch checked first (a refused one fails
    its batch, which PyTriton answers as one), then each image restored in turn by this instance's Deblurrer."""
    bundle = deblurrer.bundle
    min_side = int(bundle.manifest.get("min_side", 32))
    lock = threading.Lock()

    def infer(requests: list[Any]) -> list[dict[str, np.ndarray]]:
        batches = []
        for index, request in enumerate(requests):
            try:
                batches.append(protocol.frames(dict(request.items()), min_side, bundle.n_positions))
            except RequestError as error:
                refusal = protocol.batch_refusal(index, len(requests), error)
                log(f"refused: {refusal}")
                raise refusal from None
        with lock:
            try:
                return [_restore(deblurrer, frames) for frames in batches]
            except Exception as error:
                log(f"failed: {type(error).__name__}: {error}")
                raise

    return infer


def _restore(deblurrer: Deblurrer, frames: Sequence[protocol.Frame]) -> dict[str, np.ndarray]:
    results = [deblurrer.restore(frame.rgb, frame.focal_length, trajectory=frame.trajectory) for frame in frames]
    return protocol.response([result.restored for result in results], [result.trajectory for result in results])


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        from pytriton.triton import Triton  # noqa: F401
    except ImportError as error:
        print(f"error: serving needs PyTriton (pip install -e '.[serve]'): {error}", file=sys.stderr)
        return 2
    try:
        for option, value in (
            ("--max-batch", args.max_batch),
            ("--instances", args.instances),
        ):
            if value < 1:
                raise ValueError(f"{option} must be at least 1, got {value}")
        _check_ports(args)
        bundle = load_bundle(args.engine)
        backend = backend_settings(args, load_build_profile(args.profile) if args.profile else None)
        restore = restore_settings(args)
        refine = refine_settings(args)
        deblurrers: list[Deblurrer] = []
        try:
            for _ in range(args.instances):
                deblurrers.append(Deblurrer(bundle, backend, restore, refine, log=_stderr))
        except BaseException:
            for deblurrer in deblurrers:
                deblurrer.close()
            raise
    except (BundleError, BackendError, ProfileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return serve(bundle, deblurrers, args)
    finally:
        for deblurrer in deblurrers:
            deblurrer.close()


def _check_ports(args: argparse.Namespace) -> None:
    """Refuse ports that are out of range, repeated or already listened on, before Triton would wait for them."""
    ports = {"--http-port": args.http_port, "--grpc-port": args.grpc_port, "--metrics-port": args.metrics_port}
    for option, port in ports.items():
        if not 1 <= port <= 65535:
            raise ValueError(f"{option} must be a port number from 1 to 65535, got {port}")
    if len(set(ports.values())) < len(ports):
        raise ValueError(f"the ports must differ, got {', '.join(f'{o} {p}' for o, p in ports.items())}")
    for option, port in ports.items():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((args.host, port))
            except OSError as error:
                raise ValueError(f"{option}: cannot listen on {args.host}:{port} ({error.strerror or error})") from None


def serve(bundle: Bundle, deblurrers: Sequence[Deblurrer], args: argparse.Namespace) -> int:
    """Run Triton with the model bound to one infer function per Deblurrer until SIGTERM or SIGINT (0), or until
    Triton dies (1)."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    def tensors(specs: Sequence[TensorSpec]) -> list[Tensor]:
        return [Tensor(name=s.name, dtype=s.dtype.type, shape=s.shape, optional=s.optional) for s in specs]

    config = TritonConfig(
        http_address=args.host,
        http_port=args.http_port,
        grpc_address=args.host,
        grpc_port=args.grpc_port,
        metrics_address=args.host,
        metrics_port=args.metrics_port,
        exit_timeout_secs=EXIT_TIMEOUT_S,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    logging.getLogger("pytriton").setLevel(logging.ERROR)  # the infer function says each refusal in one line
    with _stop_signals() as stopping, contextlib.redirect_stdout(sys.stderr):  # tritonserver's log goes to stdout
        try:
            triton = Triton(config=config)
            try:
                triton.bind(
                    model_name=protocol.MODEL_NAME,
                    infer_func=[infer_function(deblurrer, _stderr) for deblurrer in deblurrers],
                    inputs=tensors(protocol.input_specs(bundle.n_positions)),
                    outputs=tensors(protocol.output_specs(bundle.n_positions)),
                    config=ModelConfig(max_batch_size=args.max_batch, batcher=DynamicBatcher()),
                    strict=True,
                )
                triton.run()
                _stderr(
                    f"serving {bundle.path} as model '{protocol.MODEL_NAME}' on {deblurrers[0].backend} "
                    f"({len(deblurrers)} instance(s), batches of up to {args.max_batch}): "
                    f"http://{args.host}:{args.http_port}, grpc {args.host}:{args.grpc_port}, "
                    f"metrics http://{args.host}:{args.metrics_port}/metrics"
                )
                while not stopping.wait(WATCH_PERIOD_S):
                    if not triton.is_alive():
                        _stderr("error: the Triton server stopped")
                        return 1
                _stderr(f"{stopping.reason}: stopping once the requests in flight are answered")
            finally:
                triton.stop()
        except Exception as error:  # PyTriton's, tritonclient's or the system's, while starting or stopping Triton
            _stderr(f"error: the Triton server failed: {_one_line(str(error)) or type(error).__name__}")
            return 1
    _stderr("stopped")
    return 0


class _Stopping(threading.Event):
    """Set by SIGTERM or SIGINT; `reason` names the signal."""

    reason = ""


@contextlib.contextmanager
def _stop_signals() -> Iterator[_Stopping]:
    """An event SIGTERM and SIGINT set instead of ending the process, the previous handlers restored after."""
    stopping = _Stopping()

    def handle(number: int, _: object) -> None:
        stopping.reason = signal.Signals(number).name
        stopping.set()

    previous = {number: signal.signal(number, handle) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stopping
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
