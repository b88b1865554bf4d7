"""`runtime.tools.macs`: multiply-accumulates from an onnxruntime profile, checked by hand on a tiny graph and on
made-up traces."""

import numpy as np
import pytest

from runtime.tools import macs


def test_profile_counts_match_a_hand_count_on_a_tiny_graph(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w_conv"], ["y"], group=2, pads=[1, 1, 1, 1]),  # (1,4,10,12) -> (1,6,10,12)
        helper.make_node("ConvTranspose", ["y", "w_up"], ["z"], strides=[2, 2]),  # -> (1,3,20,24)
        helper.make_node("MatMul", ["a", "w_matmul"], ["m"]),  # (2,5,7) x (7,4) -> (2,5,4)
        helper.make_node("Gemm", ["g", "w_gemm"], ["n"], transA=1),  # (7,5)^T x (7,3) -> (5,3)
    ]
    graph = helper.make_graph(
        nodes,
        "counting",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 10, 12]),
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 5, 7]),
            helper.make_tensor_value_info("g", TensorProto.FLOAT, [7, 5]),
        ],
        [
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 20, 24]),
            helper.make_tensor_value_info("m", TensorProto.FLOAT, [2, 5, 4]),
            helper.make_tensor_value_info("n", TensorProto.FLOAT, [5, 3]),
        ],
        [weight("w_conv", 6, 2, 3, 3), weight("w_up", 6, 3, 2, 2), weight("w_matmul", 7, 4), weight("w_gemm", 7, 3)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "counting.onnx"
    onnx.save(model, path)
    feed = {
        "x": np.ones((1, 4, 10, 12), np.float32),
        "a": np.ones((2, 5, 7), np.float32),
        "g": np.ones((7, 5), np.float32),
    }
    counts, _ = macs.profile_macs(path, [feed, feed])
    expected = {
        "Conv": (1 * 6 * 10 * 12) * (2 * 3 * 3),  # output elements x Cin/group x kH x kW
        "ConvTranspose": (1 * 6 * 10 * 12) * (3 * 2 * 2),  # input elements x Cout/group x kH x kW
        "MatMul": (2 * 5 * 4) * 7,
        "Gemm": (5 * 3) * 7,
    }
    assert [count.by_op for count in counts] == [expected, expected]
    assert counts[0].uncounted == 0 and counts[0].total == sum(expected.values())


def kernel(op: str, ts: int, inputs: list[list[int]], outputs: list[list[int]]) -> dict:
    """A profile's kernel-time event of one node."""
    shapes = {"input_type_shape": [{"float": s} for s in inputs], "output_type_shape": [{"float": s} for s in outputs]}
    return {"cat": "Node", "name": f"{op}_kernel_time", "ts": ts, "dur": 1, "args": {"op_name": op, **shapes}}


def test_each_run_gets_the_nodes_inside_it_and_counts_what_lacks_shapes():
    events = [
        {"cat": "Session", "name": "model_run", "ts": 100, "dur": 50},
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 50},
        kernel("MatMul", 10, [[2, 3], [3, 4]], [[2, 4]]),
        kernel("MatMul", 110, [[2, 5], [5, 4]], [[2, 4]]),
        kernel("Conv", 120, [[1, 2, 4, 4]], [[1, 3, 4, 4]]),  # no weight shape: not counted
        kernel("MatMul", 75, [[2, 3], [3, 4]], [[2, 4]]),  # between the runs
        kernel("Relu", 20, [[1, 8]], [[1, 8]]),  # free
    ]
    first, second = macs.macs_from_trace(events)
    assert first.by_op == {"Conv": 0, "ConvTranspose": 0, "MatMul": 2 * 4 * 3, "Gemm": 0} and first.uncounted == 0
    assert second.by_op["MatMul"] == 2 * 4 * 5 and second.uncounted == 1
    assert second.gmac == pytest.approx(40 / 1e9)


def test_a_node_without_output_shapes_is_not_counted():
    assert macs.node_macs("Conv", [(1, 2, 4, 4), (3, 2, 3, 3)], []) is None
    assert macs.node_macs("Conv", [(1, 2, 4, 4), (3, 2, 3, 3)], [(1, 3, 4, 4)]) == 3 * 16 * 2 * 9
