"""onnxruntime profiler traces: profiling sessions, and the runs, kernels and thread pool a trace records.

The multiply-accumulate count (`runtime.tools.macs`) and the convolution floor (`runtime.tools.comparison`) both
read what one `session.run` did from these traces.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import onnxruntime


def profiling_options(prefix: Path) -> onnxruntime.SessionOptions:
    """Quiet session options that write a profile trace to `prefix`*.json when the session ends profiling."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(prefix)
    return options


def read_trace(trace: str | Path, directory: Path) -> list[dict[str, Any]]:
    """The events of the trace `session.end_profiling()` named, found in `directory` when the name is relative."""
    trace = Path(trace)
    return json.loads((trace if trace.is_absolute() else directory / trace.name).read_text())


def run_spans(events: Iterable[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """(start, end) in microseconds of each `session.run` in a trace, in run order."""
    return sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )


def kernel_events(events: Iterable[Mapping[str, Any]], ops: Iterable[str]) -> Iterator[Mapping[str, Any]]:
    """The kernel-time events of the nodes whose operator is one of `ops`, in trace order."""
    wanted = set(ops)
    for event in events:
        if (
            event.get("cat") == "Node"
            and event.get("args", {}).get("op_name") in wanted
            and event.get("name", "").endswith("_kernel_time")
        ):
            yield event


def trace_threads(events: Iterable[Mapping[str, Any]]) -> int | None:
    """The intra-op pool size seen in a trace: the calling thread plus the pool's other threads."""
    sizes = [
        1 + len(stats["sub_threads"])
        for e in events
        if isinstance(stats := e.get("args", {}).get("thread_scheduling_stats"), dict) and "sub_threads" in stats
    ]
    return max(sizes) if sizes else None
