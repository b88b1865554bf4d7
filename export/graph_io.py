"""Write one ONNX graph and prove it: the exporters by opset, the onnx checker, the TensorRT lint, onnxruntime
parity with PyTorch, and the graph's I/O description for the manifest. Shared by every graph of a bundle
(`export.onnx`) and the refine graph (`export.refine`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from torch import Tensor, nn

from export.graphs import MIN_SIDE
from export.lint import lint_model

DEFAULT_OPSET = 17
#: GridSample exists from opset 16; from opset 20 its mode is spelled `linear` (TensorRT runs it as nearest).
SUPPORTED_OPSETS = (16, 17, 18, 19)
#: The oldest TensorRT that parses each opset, and the JetPack that ships it.
OLDEST_TENSORRT = {16: ("8.5", "5.1"), 17: ("8.5", "5.1"), 18: ("10.0", "6.1"), 19: ("10.0", "6.1")}
#: Max abs difference onnxruntime CPU vs PyTorch allowed per output (DESIGN.md section 5).
TOLERANCES = {"trajectory": 1e-5, "restored": 1e-4, "frames": 1e-5, "reblurred": 1e-5}
#: Traced at one shape, verified at another: batch 2, portrait, not a multiple of 8.
TRACE_SHAPE = (1, 64, 64)
VERIFY_SHAPE = (2, 70, 52)


class ExportError(RuntimeError):
    """The export could not produce a sound bundle; the message says which graph or file and why."""


def write_onnx(
    module: nn.Module,
    trace: dict[str, Tensor],
    outputs: tuple[str, ...],
    dynamic_axes: dict[str, dict[int, str]],
    path: Path,
    opset: int,
) -> None:
    """Trace `module` on `trace` (inputs by name) to `path`: TorchScript below opset 18, dynamo from 18."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        options: dict[str, Any] = (
            {"dynamic_axes": dynamic_axes}
            if opset < 18
            else {"dynamic_shapes": {name: _dims(dynamic_axes[name]) for name in trace}}
        )
        try:
            torch.onnx.export(
                module,
                tuple(trace.values()),
                str(path),
                input_names=list(trace),
                output_names=list(outputs),
                opset_version=opset,
                dynamo=opset >= 18,
                external_data=False,
                **options,
            )
        except Exception as error:
            raise ExportError(f"{path.name}: torch.onnx.export failed: {str(error).splitlines()[0]}") from error


def check_onnx(path: Path, file: str, trt_version: str) -> onnx.ModelProto:
    """Load the graph at `path` and prove it: `onnx.checker` full check, strict shape inference and the TensorRT
    lint for `trt_version`. Raises `ExportError` naming `file`."""
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(f"{file}: invalid ONNX: {str(error).splitlines()[0]}") from None
    problems = lint_model(model, trt_version)
    if problems:
        raise ExportError(f"{file}: fails the TensorRT {trt_version} lint: " + "; ".join(map(str, problems)))
    return model


def onnxruntime_parity(
    module: nn.Module,
    inputs: dict[str, Tensor],
    path: Path,
    outputs: Sequence[str],
    tolerances: Mapping[str, float],
    relative: bool = False,
) -> dict[str, float]:
    """Max difference per output between onnxruntime CPU running `path` and `module` on `inputs` (divided by the
    output's largest magnitude when `relative`); raises `ExportError` naming the file above `tolerances`."""
    with torch.no_grad():
        expected = module(*inputs.values())
    expected = expected if isinstance(expected, tuple) else (expected,)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(list(outputs), {name: value.numpy() for name, value in inputs.items()})
    errors = {}
    for name, got, want in zip(outputs, actual, expected, strict=True):
        reference = want.numpy()
        scale = max(float(np.abs(reference).max()), 1e-30) if relative else 1.0
        errors[name] = float(np.abs(got - reference).max()) / scale
    over = {name: error for name, error in errors.items() if not error <= tolerances[name]}
    if over:
        kind = " (relative)" if relative else ""
        failed = ", ".join(f"{name} {error:.2e} > {tolerances[name]:.0e}" for name, error in over.items())
        raise ExportError(f"{path.name}: onnxruntime differs from PyTorch{kind}: {failed}")
    return errors


def _dims(axes: dict[int, str]) -> dict[int, Any]:
    minimum = {"batch": 1, "height": MIN_SIDE, "width": MIN_SIDE}
    return {axis: torch.export.Dim(name, min=minimum[name]) for axis, name in axes.items()}


def io_description(model: onnx.ModelProto) -> dict[str, Any]:
    """Names, dtypes and shapes (symbolic axes by name) of a graph's inputs and outputs."""

    def describe(value: onnx.ValueInfoProto) -> dict[str, Any]:
        tensor = value.type.tensor_type
        shape = [dim.dim_param or dim.dim_value for dim in tensor.shape.dim]
        return {
            "name": value.name,
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
            "shape": shape,
        }

    return {"inputs": [describe(v) for v in model.graph.input], "outputs": [describe(v) for v in model.graph.output]}
