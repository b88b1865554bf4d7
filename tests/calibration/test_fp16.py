"""Mixed-precision ONNX (FP16 with an FP32 geometry island) on the small bundle: structure, lint, accuracy."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto

from calibration.fp16 import ConversionError, add_fp16_variant, convert_model, geometry_node_names, load_model, main
from calibration.gate import Sample
from export.graphs import GRAPHS, example_inputs
from export.lint import lint_model_versions, resolve_versions
from export.refine import export_refine
from runtime.core.backends import BackendSettings, load_runners
from runtime.core.bundle import load_bundle
from runtime.core.deblurrer import Deblurrer
from runtime.core.refine import RefineSettings, graph_function, refine_trajectory
from tests.runtime.conftest import smooth_rgb

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
#: Max abs difference, converted graph vs the FP32 graph, both on onnxruntime CPU at 2x70x52 and 1x64x96.
#: Measured here (onnxruntime 1.32, x86): trajectory 3.0e-5 rad, restored 3.0e-4, frames 2.4e-4, reblurred
#: 1.1e-4 (FP16 rounding near 1.0 alone is 4.9e-4). onnxruntime's CPU provider runs FP16 Conv, but where an op
#: has no FP16 kernel it computes in FP32 behind casts it inserts, so this bounds the graph's FP16 storage and
#: arithmetic, not TensorRT's FP16 kernels.
TOLERANCE = {"trajectory": 1e-4, "restored": 1e-3, "frames": 1e-3, "reblurred": 5e-4}


@pytest.fixture(scope="module")
def graphs(small_bundle) -> dict[str, tuple[onnx.ModelProto, onnx.ModelProto]]:
    """role -> (the bundle's FP32 graph, its mixed-precision conversion)."""
    pairs = {}
    for spec in GRAPHS:
        model = onnx.load(str(small_bundle / spec.file))
        pairs[spec.role] = (model, convert_model(model))
    return pairs


def elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    types = {value.name: value.type.tensor_type.elem_type for value in values}
    types.update({tensor.name: tensor.data_type for tensor in model.graph.initializer})
    return types


@pytest.mark.parametrize("role", ["trajectory", "restoration", "sequence"])
def test_the_converted_graph_is_valid_onnx(graphs, role):
    _, converted = graphs[role]
    onnx.checker.check_model(converted, full_check=True)
    onnx.shape_inference.infer_shapes(converted, check_type=True, strict_mode=True)


@pytest.mark.parametrize("role", ["trajectory", "restoration", "sequence"])
def test_inputs_and_outputs_stay_float32(graphs, role):
    original, converted = graphs[role]
    signature = [(v.name, v.type.tensor_type.elem_type) for v in [*converted.graph.input, *converted.graph.output]]
    assert signature == [
        (v.name, v.type.tensor_type.elem_type) for v in [*original.graph.input, *original.graph.output]
    ]
    assert all(elem_type == FLOAT for _, elem_type in signature)


@pytest.mark.parametrize("role", ["restoration", "sequence"])
def test_gridsample_and_the_geometry_stay_float32(graphs, role):
    original, converted = graphs[role]
    island = geometry_node_names(original)
    assert sum(node.op_type == "GridSample" for node in original.graph.node if node.name in island) >= 1
    types = elem_types(converted)
    kept = [node for node in converted.graph.node if node.name in island]
    assert len(kept) == len(island)  # no geometry node was dropped or renamed
    for node in kept:
        for tensor in [*node.input, *node.output]:
            assert types.get(tensor) != FLOAT16, f"{node.name} ({node.op_type}) touches float16 tensor {tensor}"
    gridsamples = [node for node in converted.graph.node if node.op_type == "GridSample"]
    assert gridsamples and all(types[node.input[0]] == FLOAT and types[node.input[1]] == FLOAT for node in gridsamples)
    assert all(types[node.output[0]] == FLOAT for node in gridsamples)


@pytest.mark.parametrize("role", ["trajectory", "restoration"])
def test_the_networks_run_in_float16(graphs, role):
    original, converted = graphs[role]
    types = elem_types(converted)
    initializers = {tensor.name: tensor for tensor in converted.graph.initializer}
    convolutions = [node for node in converted.graph.node if node.op_type in ("Conv", "ConvTranspose")]
    assert len(convolutions) == sum(node.op_type in ("Conv", "ConvTranspose") for node in original.graph.node)
    for node in convolutions:
        assert initializers[node.input[1]].data_type == FLOAT16, f"{node.name} weights"
        assert types[node.input[0]] == FLOAT16 and types[node.output[0]] == FLOAT16
    assert not [tensor.name for tensor in converted.graph.initializer if tensor.data_type == FLOAT]


def test_resize_scales_stay_float32_as_the_spec_requires(graphs):
    _, converted = graphs["trajectory"]
    types = elem_types(converted)
    resizes = [node for node in converted.graph.node if node.op_type == "Resize"]
    assert resizes and all(types[node.input[2]] == FLOAT for node in resizes if len(node.input) > 2 and node.input[2])


@pytest.mark.parametrize("role", ["trajectory", "restoration", "sequence"])
def test_the_converted_graph_passes_the_tensorrt_lint(graphs, role):
    _, converted = graphs[role]
    results = lint_model_versions(converted, resolve_versions("all"), name=role)
    assert {version: [str(p) for p in problems] for version, problems in results.items() if problems} == {}


def test_the_input_model_is_not_changed(small_bundle):
    model = onnx.load(str(small_bundle / "restoration.onnx"))
    before = model.SerializeToString()
    convert_model(model)
    assert model.SerializeToString() == before


@pytest.mark.parametrize("shape", [(2, 70, 52), (1, 64, 96)])
@pytest.mark.parametrize("role", ["trajectory", "restoration", "sequence"])
def test_onnxruntime_cpu_agrees_with_the_fp32_graph(graphs, role, shape):
    original, converted = graphs[role]
    spec = next(spec for spec in GRAPHS if spec.role == role)
    inputs = {name: value.numpy() for name, value in example_inputs(spec, *shape, 25, seed=1).items()}
    options = ["CPUExecutionProvider"]
    expected = onnxruntime.InferenceSession(original.SerializeToString(), providers=options).run(None, inputs)
    actual = onnxruntime.InferenceSession(converted.SerializeToString(), providers=options).run(None, inputs)
    for name, want, got in zip(spec.outputs, expected, actual, strict=True):
        assert got.dtype == np.float32 and got.shape == want.shape
        error = float(np.abs(got - want).max())
        assert error <= TOLERANCE[name], f"{role} {name}: {error:.2e} > {TOLERANCE[name]:.0e}"
        assert error > 0  # it did compute in FP16


def test_the_command_line_writes_the_converted_graph(small_bundle, tmp_path, capsys):
    target = tmp_path / "sequence.fp16.onnx"
    assert main([str(small_bundle / "sequence.onnx"), str(target)]) == 0
    onnx.checker.check_model(onnx.load(str(target)), full_check=True)
    assert "nodes kept FP32 (geometry)" in capsys.readouterr().out


def test_a_file_that_is_not_onnx_is_refused_in_one_line(tmp_path):
    bogus = tmp_path / "bogus.onnx"
    for content in (b"\x00not onnx at all\xff", b"plain text"):
        bogus.write_bytes(content)
        with pytest.raises(ConversionError, match="bogus.onnx: (cannot read it as ONNX|not an ONNX model)"):
            load_model(bogus)


# --- the gated bundle variant ------------------------------------------------------------------------------------


def test_a_bundle_gets_a_gated_fp16_variant_the_runtime_runs(bundle_copy):
    samples = [Sample(smooth_rgb(48, 64, seed=seed), 64.0) for seed in range(2)]
    entry = add_fp16_variant(bundle_copy, samples, progress=lambda _: None)
    assert load_bundle(bundle_copy).precisions["fp16"] == entry  # files in the sha256 table
    assert entry["graphs"] == {role: f"{role}.fp16.onnx" for role in ("trajectory", "restoration", "sequence")}
    assert entry["gate"]["measured_on"] == "images" and entry["gate"]["passed"]
    assert entry["gate"]["psnr_vs_fp32"] > 40 and entry["conversion"]["float32_nodes"]["restoration"] > 0
    rgb = smooth_rgb(48, 64, seed=5)
    with (
        Deblurrer(bundle_copy, BackendSettings("ort-cpu"), log=lambda _: None) as fp32,
        Deblurrer(bundle_copy, BackendSettings("ort-cpu", "fp16"), log=lambda _: None) as half,
    ):
        expected, got = fp32.restore(rgb), half.restore(rgb)
    assert 0 < np.abs(got.restored - expected.restored).max() < 1e-2

    # Refinement stays FP32 next to FP16 nets, its loss-only evaluations (through the sequence graph) too. At this
    # size the default level is coarse, so the start's loss comes from the sequence graph. The blurry image is the
    # latent's FP32 blur under a nearby trajectory, so the loss is small and FP16 rounding would show (measured:
    # relative 1e-4 with the FP16 sequence graph, 2e-7 with the FP32 one).
    export_refine(bundle_copy, log=lambda _: None)
    with (
        Deblurrer(bundle_copy, BackendSettings("ort-cpu"), log=lambda _: None) as fp32,
        Deblurrer(
            bundle_copy, BackendSettings("ort-cpu", "fp16"), refine=RefineSettings(steps=3), log=lambda _: None
        ) as half,
    ):
        plain = half.restore(rgb, refine=False)
        latent = np.clip(plain.restored, 0, 1)
        blurry = fp32.sequence(latent, 1.2 * plain.trajectory, plain.intrinsics)[1]
        refined = half.refine_result(blurry, plain)
    cpu = BackendSettings("ort-cpu")
    run = graph_function(load_runners(load_bundle(bundle_copy), ("refine",), cpu, log=lambda _: None)[1]["refine"])
    unrefined = RefineSettings(steps=0, scales=(1.0,))
    start = refine_trajectory(run, blurry, latent, plain.trajectory, plain.intrinsics, unrefined)
    assert refined.refinement is not None
    assert refined.refinement.loss_before == pytest.approx(start.loss_before, rel=1e-5)


def test_bundle_mode_needs_samples_for_its_gate(small_bundle, capsys):
    assert main([str(small_bundle)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "error: bundle mode needs --pairs DIR or --images DIR for the accuracy gate"
