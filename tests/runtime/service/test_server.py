"""A real server of the demo bundle: its answers equal the in-process Deblurrer's over HTTP and gRPC, concurrent
clients all get theirs, a bad request fails alone with a message saying what is wrong, and Triton's health,
readiness and metrics endpoints answer."""

from __future__ import annotations

import re
import threading
import urllib.request

import numpy as np
import pytest

from runtime import BackendSettings, Deblurrer
from runtime.service import protocol
from runtime.service.benchmark import main as benchmark_main
from runtime.service.connection import Connection, ServedError
from tests.conftest import run
from tests.runtime.service.conftest import DEMO, raw_infer, rgb8

pytest.importorskip("tritonclient.http")
pytest.importorskip("tritonclient.grpc")


@pytest.fixture(scope="module")
def in_process():
    """The in-process pipeline's answer for an image: (restored uint8 RGB, trajectory)."""
    with Deblurrer(DEMO, BackendSettings("ort-cpu", threads=1), log=lambda _: None) as deblurrer:

        def answer(image: np.ndarray, focal_length: float | None = None) -> tuple[np.ndarray, np.ndarray]:
            result = deblurrer.restore(image.astype(np.float32) / np.float32(255), focal_length)
            return protocol.response([result.restored], [result.trajectory])[protocol.RESTORED][0], result.trajectory

        yield answer


def assert_same(outputs: dict[str, np.ndarray], expected: tuple[np.ndarray, np.ndarray]) -> None:
    restored, trajectory = outputs[protocol.RESTORED][0], outputs[protocol.TRAJECTORY][0]
    assert restored.dtype == np.uint8 and restored.shape == expected[0].shape
    assert np.abs(restored.astype(int) - expected[0].astype(int)).max() <= 1
    assert trajectory.dtype == np.float32 and trajectory.shape == (25, 3)
    np.testing.assert_allclose(trajectory, expected[1], atol=1e-5)


@pytest.mark.parametrize("grpc", [False, True], ids=["http", "grpc"])
def test_served_answers_equal_the_in_process_deblurrers(server, in_process, grpc):
    image = rgb8(64, 64, seed=1)
    connection = Connection(server.grpc_url if grpc else server.http_url, grpc)
    assert connection.not_ready() is None
    assert_same(connection.infer(protocol.request_arrays(image)), in_process(image))
    assert_same(connection.infer(protocol.request_arrays(image, 90.0)), in_process(image, 90.0))


def counters(server) -> dict[str, float]:
    """Triton's counts for the model: requests answered, and model executions (one per batch)."""
    with urllib.request.urlopen(server.metrics_url, timeout=5) as answer:
        metrics = answer.read().decode()
    found = re.findall(
        rf'^(nv_inference_request_success|nv_inference_exec_count){{model="{protocol.MODEL_NAME}"[^}}]*}} (\S+)$',
        metrics,
        re.MULTILINE,
    )
    return {name: float(value) for name, value in found}


def test_concurrent_clients_all_get_their_answers_in_batches(server, in_process):
    before = counters(server)
    images = [rgb8(64, 64, seed) for seed in range(4)]
    expected = [in_process(image) for image in images]
    failures: list[str] = []
    answered: list[int] = []

    def client(index: int) -> None:
        connection = Connection(server.http_url)
        for _ in range(4):
            try:
                assert_same(connection.infer(protocol.request_arrays(images[index])), expected[index])
                answered.append(index)
            except (ServedError, AssertionError) as error:
                failures.append(f"client {index}: {error}")

    threads = [threading.Thread(target=client, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and sorted(answered) == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    after = counters(server)
    requests = after["nv_inference_request_success"] - before["nv_inference_request_success"]
    executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
    assert requests == 16 and executions < requests  # requests of one size were batched together


def _with(**changes: np.ndarray) -> dict[str, np.ndarray]:
    return {**protocol.request_arrays(rgb8(64, 64, seed=5)), **changes}


def _trajectory(value: float) -> np.ndarray:
    trajectory = np.zeros((1, 25, 3), np.float32)
    trajectory[0, 7, 2] = value
    return trajectory


@pytest.mark.parametrize(
    "arrays, message",
    [
        (_with(image=rgb8(64, 64)[None].astype(np.float32)), "data-type is 'FP32', but model 'deblur' expects 'UINT8'"),
        (_with(image=rgb8(64, 64)[None, ..., 0]), "unexpected shape for input 'image'"),
        (_with(image=rgb8(16, 24)[None]), "image: 24x16 is too small; the bundle needs at least 32 px a side"),
        (_with(focal_length=np.array([[np.nan]], np.float32)), "focal_length: focal length nan px is outside"),
        (_with(focal_length=np.array([[-30.0]], np.float32)), "focal_length: focal length -30 px is outside"),
        (_with(trajectory=_trajectory(np.inf)), "trajectory: pose 7 is not finite"),
    ],
    ids=["dtype", "rank", "small", "nan-focal-length", "negative-focal-length", "infinite-trajectory"],
)
def test_a_bad_request_fails_alone_and_the_next_one_is_answered(server, in_process, arrays, message):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as refused:
        raw_infer(server.http_url, arrays)
    assert message in refused.value.message()
    assert message in protocol.error_line(refused.value.message())
    image = rgb8(64, 64, seed=2)
    assert_same(raw_infer(server.http_url, protocol.request_arrays(image)), in_process(image))
    assert server.process.poll() is None


def test_a_refusal_reaches_a_grpc_client_as_one_line(server):
    connection = Connection(server.grpc_url, grpc=True)
    with pytest.raises(ServedError, match=r"^focal_length: focal length nan px is outside 1\.\.1000000 px$"):
        connection.infer(protocol.request_arrays(rgb8(64, 64), float("nan")))


def test_health_readiness_and_metrics_answer(server):
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{protocol.MODEL_NAME}/ready"):
        with urllib.request.urlopen(f"http://{server.http_url}{path}", timeout=5) as answer:
            assert answer.status == 200, path
    with urllib.request.urlopen(server.metrics_url, timeout=5) as answer:
        metrics = answer.read().decode()
    assert f'nv_inference_request_success{{model="{protocol.MODEL_NAME}"' in metrics
    assert f'nv_inference_request_failure{{model="{protocol.MODEL_NAME}"' in metrics


def test_the_benchmark_measures_a_running_server(server):
    code, stdout, stderr = run(
        benchmark_main, "--url", server.http_url, "--size", "64x64", "--requests", "3", "--concurrency", "2",
        "--backend", "ort-cpu", "--threads", "1",
    )  # fmt: skip
    assert code == 0, stderr
    assert "`python -m runtime.service.benchmark --url" in stdout
    assert "| in-process Deblurrer | 3 | 1 |" in stdout and "| served, HTTP | 3 | 2 |" in stdout
    assert "Served throughput: " in stdout
