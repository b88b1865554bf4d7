"""A real server for the serving tests: `python -m runtime.serve` of the demo bundle on free local ports, started
once per module and always stopped; skipped, with the reason, where no Triton server can start (PyTriton missing,
or its Python backend unable to run under this interpreter). Also a raw tritonclient request, for requests the
project's own client would never send."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

from runtime.service import protocol
from runtime.service.process import ServerError, ServerProcess, start_server
from tests.runtime.conftest import smooth_bgr8

DEMO = Path(__file__).resolve().parents[3] / "runtime" / "bundles" / "demo"
#: One CPU thread and small batches: the tests share two cores.
SERVER_OPTIONS = ("--backend", "ort-cpu", "--threads", "1", "--max-batch", "4")


def rgb8(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An HxWx3 uint8 RGB test picture, smooth like a photograph."""
    return np.ascontiguousarray(smooth_bgr8(height, width, seed)[..., ::-1])


def launch(log: Path, *options: str) -> ServerProcess:
    """A started server of the demo bundle with SERVER_OPTIONS and `options`, or a skip saying why none can start
    here."""
    try:
        return start_server(DEMO, [*SERVER_OPTIONS, *options], log)
    except ServerError as error:
        pytest.skip(f"no Triton server can start here: {error}")


@contextlib.contextmanager
def serving(log: Path, *options: str) -> Iterator[ServerProcess]:
    """`launch` for the block; the server is always stopped after it."""
    started = launch(log, *options)
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    with serving(tmp_path_factory.mktemp("server") / "server.log") as started:
        yield started


def raw_infer(url: str, arrays: Mapping[str, np.ndarray], grpc: bool = False) -> dict[str, np.ndarray]:
    """The model's outputs for `arrays` sent as they are (any dtype or shape), with tritonclient; its
    InferenceServerException when the server refuses them."""
    if grpc:
        import tritonclient.grpc as client_module
    else:
        import tritonclient.http as client_module
    dtypes = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64"}
    inputs = []
    for name, array in arrays.items():
        tensor = client_module.InferInput(name, list(array.shape), dtypes[array.dtype])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    client = client_module.InferenceServerClient(url)
    try:
        result = client.infer(protocol.MODEL_NAME, inputs)
        return {name: result.as_numpy(name) for name in (protocol.RESTORED, protocol.TRAJECTORY)}
    finally:
        client.close()
