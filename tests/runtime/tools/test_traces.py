"""`runtime.tools.traces`: the runs, kernels and thread pool read from an onnxruntime profile trace."""

import numpy as np
import onnxruntime
import pytest

from runtime.tools import traces

EVENTS = [
    {"cat": "Session", "name": "model_run", "ts": 300, "dur": 40, "args": {}},
    {"cat": "Session", "name": "model_run", "ts": 100, "dur": 50, "args": {}},
    {"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 90},
    {"cat": "Node", "name": "conv_kernel_time", "ts": 110, "dur": 5, "args": {"op_name": "Conv"}},
    {"cat": "Node", "name": "conv_fence_before", "ts": 109, "dur": 0, "args": {"op_name": "Conv"}},
    {"cat": "Node", "name": "relu_kernel_time", "ts": 120, "dur": 2, "args": {"op_name": "Relu"}},
    {
        "cat": "Node",
        "name": "matmul_kernel_time",
        "ts": 310,
        "dur": 7,
        "args": {"op_name": "MatMul", "thread_scheduling_stats": {"sub_threads": {"1": 0, "2": 0}}},
    },
]


def test_runs_come_in_run_order_with_their_end():
    assert traces.run_spans(EVENTS) == [(100, 150), (300, 340)]


def test_only_kernel_times_of_the_asked_ops_are_kept():
    kept = list(traces.kernel_events(EVENTS, ("Conv", "MatMul")))
    assert [event["name"] for event in kept] == ["conv_kernel_time", "matmul_kernel_time"]


def test_the_thread_pool_is_the_caller_and_its_sub_threads():
    assert traces.trace_threads(EVENTS) == 3
    assert traces.trace_threads(EVENTS[:3]) is None


def test_a_profiled_session_writes_a_trace_that_reads_back(tmp_path):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    options = traces.profiling_options(tmp_path / "trace")
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for _ in range(2):
        session.run(None, {"x": np.ones((1, 4), np.float32)})
    events = traces.read_trace(session.end_profiling(), tmp_path)
    assert len(traces.run_spans(events)) == 2
    assert len(list(traces.kernel_events(events, ("Relu",)))) == 2
