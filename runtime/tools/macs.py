"""Multiply-accumulates of an ONNX graph, counted per run from an onnxruntime profile, without torch or onnx.

Every Conv, ConvTranspose, MatMul and Gemm node is counted at the shapes it actually ran at; everything else is
treated as free. The profiled session runs the graph as stored (no graph optimisation, no weight pre-packing), so
the count is the graph's own, not that of onnxruntime's rewritten graph (which pads channels to its block size).
"""

from __future__ import annotations

import bisect
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from runtime.tools import traces

#: Operators whose multiply-accumulates are counted; everything else is treated as free.
COUNTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one graph run, by operator type, as recorded by onnxruntime's profiler."""

    by_op: dict[str, int]
    #: Nodes of a counted type whose shapes the profile lacked (so the total is a lower bound when > 0).
    uncounted: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_op.values())

    @property
    def gmac(self) -> float:
        return self.total / 1e9


def _shapes(entries: object) -> list[tuple[int, ...]]:
    """The profile's `[{"float": [1, 3, 8, 8]}, ...]` as shape tuples."""
    if not isinstance(entries, list):
        return []
    return [tuple(int(side) for side in next(iter(entry.values()))) for entry in entries if entry]


def node_macs(op: str, inputs: Sequence[tuple[int, ...]], outputs: Sequence[tuple[int, ...]]) -> int | None:
    """Multiply-accumulates of one node from its input and output shapes; None when the shapes are not enough.

    Conv: output elements x (Cin/group x kH x kW), the weight's shape past its first axis. ConvTranspose: input
    elements x (Cout/group x kH x kW), likewise. MatMul: output elements x K (A's last axis). Gemm: output
    elements x K, with K = size(A) / M whether or not A is transposed.
    """
    if not outputs:
        return None
    out = math.prod(outputs[0])
    if op == "Conv" and len(inputs) >= 2:
        return out * math.prod(inputs[1][1:])
    if op == "ConvTranspose" and len(inputs) >= 2:
        return math.prod(inputs[0]) * math.prod(inputs[1][1:])
    if op == "MatMul" and len(inputs) >= 2 and inputs[0]:
        return out * inputs[0][-1]
    if op == "Gemm" and len(inputs) >= 2 and outputs[0]:
        return out * (math.prod(inputs[0]) // outputs[0][0])
    return None


def macs_from_trace(events: Iterable[Mapping[str, Any]]) -> list[MacCount]:
    """One `MacCount` per `session.run` in an onnxruntime profile trace (its list of events), in run order."""
    events = list(events)
    runs = traces.run_spans(events)
    starts = [start for start, _ in runs]
    counts: list[dict[str, int]] = [dict.fromkeys(COUNTED_OPS, 0) for _ in runs]
    uncounted = [0] * len(runs)
    for event in traces.kernel_events(events, COUNTED_OPS):
        args = event["args"]
        index = bisect.bisect_right(starts, int(event["ts"])) - 1
        if index < 0 or int(event["ts"]) > runs[index][1]:
            continue
        op = args["op_name"]
        macs = node_macs(op, _shapes(args.get("input_type_shape")), _shapes(args.get("output_type_shape")))
        if macs is None:
            uncounted[index] += 1
        else:
            counts[index][op] += macs
    return [MacCount(by_op, missing) for by_op, missing in zip(counts, uncounted, strict=True)]


def profile_macs(graph: Path, feeds: Sequence[Mapping[str, np.ndarray]]) -> tuple[list[MacCount], int | None]:
    """Run an ONNX graph once per feed on onnxruntime's CPU provider with profiling on; count its work per run.

    Graph optimisation and weight pre-packing are off: the former rewrites convolutions into onnxruntime's
    blocked layout (channels padded to the block size), the latter drops pre-packed weights from the recorded
    inputs (ConvTranspose, Gemm, MatMul). Also returns the intra-op thread count the session used (None if unseen).
    """
    with tempfile.TemporaryDirectory(prefix="blur2seq-profile-") as directory:
        options = traces.profiling_options(Path(directory) / "profile")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.add_session_config_entry("session.disable_prepacking", "1")
        session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        try:
            for feed in feeds:
                session.run(None, dict(feed))
        finally:
            trace = session.end_profiling()
            del session
        events = traces.read_trace(trace, Path(directory))
    counts = macs_from_trace(events)
    if len(counts) != len(feeds):
        raise RuntimeError(f"{graph}: the onnxruntime profile holds {len(counts)} runs, {len(feeds)} were made")
    return counts, traces.trace_threads(events)
