"""OpenVINO on the CPU over the bundle's ONNX graphs: the x86 runtime many users pick instead of onnxruntime.

Precisions: `fp32`, `bf16` (OpenVINO's inference-precision hint: BF16 matrix units where the CPU has them, FP32
elsewhere; inputs and outputs stay float32) and the bundle's INT8 variants (`calibration.int8`; OpenVINO runs
QDQ graphs as INT8). `openvino` is imported inside functions, so this module imports on machines without it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from runtime.core.backends.base import Backend, BackendError
from runtime.core.bundle import Bundle, first_line
from runtime.core.precisions import OPENVINO_HINTS

NAME = "openvino"


class OpenVinoRunner:
    """One bundle graph compiled for OpenVINO's CPU plugin; one infer request, reused."""

    backend = NAME

    def __init__(self, compiled: Any, input_names: tuple[str, ...], output_names: tuple[str, ...]) -> None:
        self.compiled: Any | None = compiled
        self.request = compiled.create_infer_request()
        self.input_names, self.output_names = input_names, output_names

    def set_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Nothing to prepare: the graphs are compiled with dynamic shapes."""

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.compiled is None:
            raise BackendError(f"{NAME} runner used after close()")
        try:
            results = self.request.infer({name: np.ascontiguousarray(value) for name, value in inputs.items()})
        except Exception as error:  # OpenVINO raises RuntimeError subclasses of its own
            raise BackendError(f"{NAME}: {first_line(error)}") from None
        return {name: np.array(results[name], copy=True) for name in self.output_names}

    def close(self) -> None:
        self.compiled = None
        self.request = None


def openvino_backend(threads: int | None = None) -> Backend:
    """The OpenVINO CPU backend; `threads` caps its inference threads (default: OpenVINO's choice)."""

    def unavailable_reason() -> str | None:
        try:
            importlib.import_module("openvino")
        except ImportError:
            return "OpenVINO is not installed (pip install openvino)"
        return None

    def load(bundle: Bundle, role: str, precision: str) -> OpenVinoRunner:
        if precision not in OPENVINO_HINTS and precision not in bundle.precisions:
            held = ", ".join([*OPENVINO_HINTS, *bundle.precisions])
            raise BackendError(f"{NAME} runs {held} for this bundle, not {precision}")
        path = bundle.graph_path(role, precision if precision not in OPENVINO_HINTS else "fp32")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": OPENVINO_HINTS.get(precision, "f32")}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        openvino = importlib.import_module("openvino")
        try:
            compiled = openvino.Core().compile_model(str(path), "CPU", config)
        except Exception as error:  # OpenVINO's own exception types
            raise BackendError(f"{path}: {NAME} cannot compile it ({first_line(error)})") from None
        graph = bundle.manifest["graphs"][role]
        names = tuple(tuple(value["name"] for value in graph[side]) for side in ("inputs", "outputs"))
        return OpenVinoRunner(compiled, *names)

    return Backend(NAME, unavailable_reason, load)
