"""The TensorRT-compatibility lint, on small graphs built with `onnx.helper` (and one real torch export)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export import trt_support
from export.lint import LintError, Problem, lint_model, lint_model_versions, lint_path, main, resolve_versions

FLOAT = TensorProto.FLOAT


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    opset: int = 17,
    initializers: list[onnx.TensorProto] | None = None,
    extra_opsets: dict[str, int] | None = None,
) -> onnx.ModelProto:
    """A model around `nodes`, importing the default domain at `opset`."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers or [])
    opsets = [helper.make_opsetid("", opset)]
    opsets += [helper.make_opsetid(domain, version) for domain, version in (extra_opsets or {}).items()]
    return helper.make_model(graph, opset_imports=opsets)


def grid_sample_model(opset: int = 17, rank: int = 4, *, conv: bool = True, **attributes: str | int) -> onnx.ModelProto:
    """(optional Conv ->) GridSample over a `rank`-D image, the shape of our PMBM warp."""
    spatial = [8] * (rank - 2)
    attributes = {"mode": "bilinear", "padding_mode": "reflection", "align_corners": 1, **attributes}
    nodes, initializers = [], []
    image = "x"
    if conv:
        weight = numpy_helper.from_array(np.zeros((3, 3, 3, 3), np.float32), "w")
        initializers.append(weight)
        nodes.append(helper.make_node("Conv", ["x", "w"], ["y"], name="/net/Conv_0", pads=[1, 1, 1, 1]))
        image = "y"
    nodes.append(helper.make_node("GridSample", [image, "grid"], ["out"], name="/pmbm/GridSample_3", **attributes))
    inputs = [
        helper.make_tensor_value_info("x", FLOAT, [1, 3, *spatial]),
        helper.make_tensor_value_info("grid", FLOAT, [1, *spatial, rank - 2]),
    ]
    outputs = [helper.make_tensor_value_info("out", FLOAT, None)]
    return make_model(nodes, inputs, outputs, opset, initializers)


def unary_model(op_type: str, *, domain: str = "", opset: int = 17, **attributes: object) -> onnx.ModelProto:
    """One `op_type` node named `/m/<op_type>_0` from a float input `x` to `y`."""
    node = helper.make_node(op_type, ["x"], ["y"], name=f"/m/{op_type}_0", domain=domain, **attributes)
    x = helper.make_tensor_value_info("x", FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", FLOAT, None)
    return make_model([node], [x], [y], opset, extra_opsets={domain: 1} if domain else None)


def pad_model(mode: str, opset: int) -> onnx.ModelProto:
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    node = helper.make_node("Pad", ["x", "pads"], ["y"], name="/m/Pad_0", mode=mode)
    x = helper.make_tensor_value_info("x", FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", FLOAT, None)
    return make_model([node], [x], [y], opset, [pads])


def qdq_model(zero_point: int, pairs: int = 1) -> onnx.ModelProto:
    """`pairs` QuantizeLinear -> DequantizeLinear pairs in a chain, all with the same INT8 zero-point."""
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    zero = numpy_helper.from_array(np.array(zero_point, np.int8), "zero")
    nodes = []
    for index in range(pairs):
        source, target = f"t{index}", f"t{index + 1}" if index + 1 < pairs else "y"
        nodes += [
            helper.make_node("QuantizeLinear", [source, "scale", "zero"], [f"q{index}"], name=f"/m/Q_{index}"),
            helper.make_node("DequantizeLinear", [f"q{index}", "scale", "zero"], [target], name=f"/m/DQ_{index}"),
        ]
    x = helper.make_tensor_value_info("t0", FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", FLOAT, None)
    return make_model(nodes, [x], [y], 17, [scale, zero])


def messages(problems: list[Problem]) -> str:
    return "\n".join(str(problem) for problem in problems)


# --- Models. -------------------------------------------------------------------------------------------------------


def test_conv_and_grid_sample_at_opset_17_pass_everywhere() -> None:
    model = grid_sample_model()
    assert lint_model(model, "8.5") == []
    assert lint_model_versions(model, trt_support.ALL_VERSIONS) == {v: [] for v in trt_support.ALL_VERSIONS}


def test_opset_20_linear_grid_sample_is_flagged_by_node() -> None:
    problems = lint_model(grid_sample_model(opset=20, mode="linear"), "10.3", name="restoration.onnx")
    assert len(problems) == 1
    text = str(problems[0])
    assert text.startswith("restoration.onnx: node /pmbm/GridSample_3 (GridSample): mode 'linear'")
    assert "nearest" in text and "4646" in text and "\n" not in text


def test_grid_sample_mode_left_to_the_opset_20_default_is_flagged() -> None:
    model = grid_sample_model(opset=20)
    grid_sample = model.graph.node[1]
    mode = next(attribute for attribute in grid_sample.attribute if attribute.name == "mode")
    grid_sample.attribute.remove(mode)
    assert "mode is not set" in messages(lint_model(model, "11.5"))


def test_grid_sample_padding_and_rank() -> None:
    assert "padding_mode 'circular'" in messages(lint_model(grid_sample_model(padding_mode="circular")))
    volumetric = grid_sample_model(opset=20, rank=5, conv=False, mode="nearest")
    assert "input is 5-D" in messages(lint_model(volumetric, "10.13"))
    assert lint_model(volumetric, "11.2") == []


@pytest.mark.parametrize("domain", ["com.microsoft", ""])
def test_inverse_is_flagged_by_node(domain: str) -> None:
    problems = lint_model(unary_model("Inverse", domain=domain), "10.3")
    assert [(p.node, p.op_type) for p in problems] == [("/m/Inverse_0", "Inverse")]
    assert "analytically" in problems[0].message


@pytest.mark.parametrize("version", ["8.5", "10.3", "11"])
def test_non_zero_is_forbidden_by_policy(version: str) -> None:
    problems = lint_model(unary_model("NonZero"), version)
    assert [p.node for p in problems] == ["/m/NonZero_0"]
    assert "project policy" in problems[0].message and "not supported" not in problems[0].message


def test_unique_is_both_unsupported_and_forbidden() -> None:
    message = lint_model(unary_model("Unique"))[0].message
    assert "not supported by TensorRT's ONNX parser;" in message and "project policy" in message


def test_control_flow_is_forbidden_and_its_body_is_linted() -> None:
    inverse = helper.make_node("Inverse", ["x"], ["z"], name="Inverse_1", domain="com.microsoft")
    branch = helper.make_graph([inverse], "then", [], [helper.make_tensor_value_info("z", FLOAT, None)])
    node = helper.make_node("If", ["c"], ["y"], name="If_0", then_branch=branch, else_branch=branch)
    inputs = [
        helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        helper.make_tensor_value_info("x", FLOAT, [3, 3]),
    ]
    model = make_model([node], inputs, [helper.make_tensor_value_info("y", FLOAT, None)])
    nodes = {p.node for p in lint_model(model)}
    assert nodes == {"If_0", "If_0/then_branch/Inverse_1", "If_0/else_branch/Inverse_1"}


def test_opset_18_fails_8_5_but_passes_10() -> None:
    model = grid_sample_model(opset=18)
    problems = lint_model(model, "8.5")
    assert len(problems) == 1 and "opset 18" in problems[0].message and problems[0].node == ""
    assert lint_model(model, "8.6") != []
    assert lint_model(model, "10") == []


def test_pad_wrap_needs_tensorrt_10() -> None:
    problems = lint_model(pad_model("wrap", opset=19), "8.6")
    assert any(p.node == "/m/Pad_0" and "mode 'wrap'" in p.message for p in problems)
    assert lint_model(pad_model("wrap", opset=19), "10.0") == []
    assert lint_model(pad_model("reflect", opset=17), "8.5") == []


def test_resize_cubic_and_crop_and_resize_are_flagged() -> None:
    model = unary_model("Resize", mode="cubic", coordinate_transformation_mode="tf_crop_and_resize")
    model.graph.node[0].input.extend(["", "scales"])
    model.graph.initializer.append(numpy_helper.from_array(np.array([1, 2], np.float32), "scales"))
    text = messages(lint_model(model))
    assert "mode 'cubic'" in text and "tf_crop_and_resize" in text


def test_float64_input_is_flagged() -> None:
    node = helper.make_node("Cast", ["x"], ["y"], name="/m/Cast_0", to=FLOAT)
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2])
    model = make_model([node], [x], [helper.make_tensor_value_info("y", FLOAT, [2])])
    problems = lint_model(model)
    assert len(problems) == 1 and "input 'x' has dtype DOUBLE" in problems[0].message


def test_bfloat16_needs_tensorrt_10_and_uint8_is_io_only() -> None:
    node = helper.make_node("Cast", ["x"], ["y"], name="/m/Cast_0", to=TensorProto.BFLOAT16)
    model = make_model(
        [node],
        [helper.make_tensor_value_info("x", FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [2])],
    )
    assert "BFLOAT16" in messages(lint_model(model, "8.6"))
    assert lint_model(model, "10.3") == []
    to_uint8 = helper.make_node("Cast", ["x"], ["u"], name="/m/Cast_1", to=TensorProto.UINT8)
    back = helper.make_node("Cast", ["u"], ["y"], name="/m/Cast_2", to=FLOAT)
    internal = make_model(
        [to_uint8, back],
        [helper.make_tensor_value_info("x", FLOAT, [2])],
        [helper.make_tensor_value_info("y", FLOAT, [2])],
    )
    assert [p.node for p in lint_model(internal, "10.3")] == ["/m/Cast_1"]


def test_qdq_zero_point_must_be_zero() -> None:
    assert lint_model(qdq_model(0)) == []
    problems = lint_model(qdq_model(3))
    assert [p.node for p in problems] == ["/m/Q_0", "/m/DQ_0"]
    assert "non-zero" in problems[0].message


def test_repetitive_problems_are_capped() -> None:
    problems = lint_model(qdq_model(3, pairs=4))
    assert [p.node for p in problems] == ["/m/Q_0", "/m/DQ_0", "/m/Q_1", "/m/DQ_1", "/m/Q_2", ""]
    assert problems[-1].message == "... and 3 more Q/DQ nodes with non-zero zero-points"


def test_trt_versions() -> None:
    assert resolve_versions("10") == ["10.0"]
    assert resolve_versions("10.3.0.26") == ["10.3"]
    assert resolve_versions("all") == list(trt_support.ALL_VERSIONS)
    assert trt_support.profile_for("10.3").opset_max == 20 and trt_support.profile_for("10.15").opset_max == 24
    assert "DeformConv" in trt_support.profile_for("10.3").ops and "DeformConv" not in trt_support.profile_for("10").ops
    for bad in ["9.2", "8.4", "7", "12", "ten"]:
        with pytest.raises(LintError, match="known: 8.5, 8.6"):
            resolve_versions(bad)


# --- Files, bundles and the command line. ---------------------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle directory with a clean graph, a bad one (opset-20 'linear' GridSample) and a manifest."""
    onnx.save(grid_sample_model(), tmp_path / "a_good.onnx")
    onnx.save(grid_sample_model(opset=20, mode="linear"), tmp_path / "b_bad.onnx")
    (tmp_path / "manifest.json").write_text("{}")
    return tmp_path


def test_bundle_reports_only_the_bad_graph(bundle: Path) -> None:
    problems = lint_path(bundle, "10.3")
    assert [(p.graph, p.node) for p in problems] == [(str(bundle / "b_bad.onnx"), "/pmbm/GridSample_3")]
    assert lint_path(bundle / "a_good.onnx") == []


def test_unlintable_paths_give_one_line_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("this is not an ONNX model\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    for path, expected in [
        (tmp_path / "missing.onnx", "no such file"),
        (text, "not an ONNX model"),
        (empty, "no .onnx files"),
        (tmp_path, "not an ONNX model"),  # the bundle holds notes.onnx
    ]:
        with pytest.raises(LintError) as caught:
            lint_path(path)
        message = str(caught.value)
        assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_cli_exit_codes(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = bundle / "a_good.onnx", bundle / "b_bad.onnx"
    assert main([str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: ok (TensorRT 8.5)\n"
    assert main([str(bundle), "--trt-version", "10.3"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{good}: ok (TensorRT 10.3)"
    assert "/pmbm/GridSample_3 (GridSample): mode 'linear'" in lines[1]
    assert lines[2] == f"{bad}: 1 problem (TensorRT 10.3)"
    assert main([str(tmp_path / "missing.onnx")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "missing.onnx: no such file" in error
    assert main([str(good), "--trt-version", "9"]) == 2
    assert "known: 8.5, 8.6" in capsys.readouterr().err
    assert main([]) == 2
    capsys.readouterr()


def test_cli_all_versions(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx.save(grid_sample_model(opset=18), bundle / "c_opset18.onnx")
    assert main([str(bundle / "a_good.onnx"), str(bundle / "c_opset18.onnx"), "--trt-version", "all"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"ok (TensorRT {', '.join(trt_support.ALL_VERSIONS)})")
    assert lines[1].endswith("[TensorRT 8.5, 8.6]") and "opset 18" in lines[1]
    assert lines[2].endswith(
        "passes TensorRT " + ", ".join(trt_support.ALL_VERSIONS[2:]) + "; fails 8.5 (1 problem), 8.6 (1 problem)"
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # dynamo=False is deprecated, and what we test here
def test_lint_of_a_torch_export_passes(tmp_path: Path) -> None:
    """What the real exporter emits for our warp: TorchScript exporter, opset 17."""
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("torch.nn.functional")

    class Warp(torch.nn.Module):
        def forward(self, image: object, grid: object) -> object:
            return functional.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=True)

    path = tmp_path / "warp.onnx"
    inputs = (torch.rand(1, 3, 8, 8), torch.rand(1, 8, 8, 2) * 2 - 1)
    torch.onnx.export(Warp(), inputs, str(path), opset_version=17, dynamo=False)
    assert lint_path(path, "8.5") == []
    assert "GridSample" in {node.op_type for node in onnx.load(str(path)).graph.node}
