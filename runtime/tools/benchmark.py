"""`python -m runtime.benchmark`: per-stage latency of a bundle on one backend, with its multiply-accumulate count.

    python -m runtime.benchmark --engine BUNDLE [--sizes 256x256,512x512] [--backend ort-cpu] [--repeats 5]
        [--backends ort-cpu,openvino --precisions fp32,bf16,int8-cpu [--torch-reference] [--plot FILE]]

Each stage is timed on its own with `time.perf_counter`; the figures are medians (with min and max) over
`--repeats` rounds after `--warmup` rounds, each round running every stage once in turn, so a burst of load from
elsewhere spreads over the stages instead of hitting one. Stages: the trajectory, restoration and sequence graphs;
I/O (decode a PNG of that size and encode the restored image as PNG, through `runtime.io.media`); and end to end (a
`Deblurrer` call on a uint8 frame, then the sharp-frame sequence of its result). When the bundle has the refine
graph, also one run of it and a whole trajectory refinement with the default `RefineSettings` (the work `--refine`
adds to each image). Whatever the backend, also one blur-operator call alone (25 warps of the image and their mean)
on onnxruntime's CPU provider in both its forms: GridSample + mean as the bundle graphs hold it, and the DeformConv
the CPU provider rewrites it into (`runtime.core.backends.ort_warps`). Inputs are a deterministic smooth synthetic
image, the default intrinsics, a small fixed trajectory (~0.01 rad) and the bundle's sigma.

The work is counted, without torch or onnx, from an onnxruntime profile of one run of each graph per size:
multiply-accumulates of every Conv, ConvTranspose, MatMul and Gemm node, with the shapes it actually ran at. That
profiled session runs the graphs as the bundle stores them (no graph optimisation, no weight pre-packing), so the
count is the bundle's own, not that of onnxruntime's rewritten graph (which pads channels to its block size).
GFLOP = 2 x GMAC; GFLOP/s divides that by the stage's median time.

With `--backends` or `--precisions`, every configuration that can run is then compared end to end at each size
(`runtime.tools.comparison`): latency, throughput, peak memory, accuracy against FP32, the PyTorch reference, the
convolution floor and the machine's matrix-multiply peak; `--plot` draws the latencies as a bar chart.

These machines are noisy: compare figures within one run (ratios), not across runs.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime

from runtime.core import camera as camera_model
from runtime.core.backends import NAMES, BackendSettings, load_runners
from runtime.core.backends.base import BackendError, Runner
from runtime.core.backends.ort import session_options
from runtime.core.backends.ort_warps import averaged_warp_model, deform_warps
from runtime.core.bundle import Bundle, BundleError, load_bundle
from runtime.core.deblurrer import Deblurrer, RestoreSettings
from runtime.core.refine import RefineSettings, graph_function, refine_trajectory
from runtime.io import media
from runtime.tools import charts, comparison

GRAPHS = ("trajectory", "restoration", "sequence")
#: Timed when the bundle has it (older bundles do not).
REFINE_GRAPH = "refine"
#: The refinement the benchmark times: what `--refine` does by default.
REFINE_SETTINGS = RefineSettings()
#: Every stage reported, in table order, with its label.
STAGES = {
    "trajectory": "trajectory graph",
    "restoration": "restoration graph",
    "sequence": "sequence graph",
    "refine": "refine graph (one run)",
    "refinement": f"refinement ({REFINE_SETTINGS.steps} steps at scales {REFINE_SETTINGS.scales})",
    "warp_gridsample": "one blur operator alone: GridSample + mean (onnxruntime CPU)",
    "warp_deformconv": "one blur operator alone: DeformConv (onnxruntime CPU)",
    "warp_torch": "one blur operator alone: PyTorch grid_sample + mean (with --torch-reference)",
    "io": "I/O (PNG decode + encode)",
    "end_to_end": "end to end (Deblurrer call + sequence)",
}
#: Operators whose multiply-accumulates are counted; everything else is treated as free.
COUNTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
DEFAULT_SIZES = ((256, 256), (512, 512))
#: Amplitude of the synthetic trajectory, radians.
TRAJECTORY_RAD = 0.01

Log = Callable[[str], object]


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _prefixed(log: Log, prefix: str) -> Log:
    return lambda text: log(prefix + text)


# ---------------------------------------------------------------------------------------------------------------
# Counting multiply-accumulates from an onnxruntime profile


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
    runs = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    starts = [start for start, _ in runs]
    counts: list[dict[str, int]] = [dict.fromkeys(COUNTED_OPS, 0) for _ in runs]
    uncounted = [0] * len(runs)
    for event in events:
        args = event.get("args", {})
        op = args.get("op_name")
        if event.get("cat") != "Node" or op not in COUNTED_OPS or not event.get("name", "").endswith("_kernel_time"):
            continue
        index = bisect.bisect_right(starts, int(event["ts"])) - 1
        if index < 0 or int(event["ts"]) > runs[index][1]:
            continue
        macs = node_macs(op, _shapes(args.get("input_type_shape")), _shapes(args.get("output_type_shape")))
        if macs is None:
            uncounted[index] += 1
        else:
            counts[index][op] += macs
    return [MacCount(by_op, missing) for by_op, missing in zip(counts, uncounted, strict=True)]


def _trace_threads(events: Iterable[Mapping[str, Any]]) -> int | None:
    """The intra-op pool size seen in a trace: the calling thread plus the pool's other threads."""
    sizes = [
        1 + len(stats["sub_threads"])
        for e in events
        if isinstance(stats := e.get("args", {}).get("thread_scheduling_stats"), dict) and "sub_threads" in stats
    ]
    return max(sizes) if sizes else None


def profile_macs(graph: Path, feeds: Sequence[Mapping[str, np.ndarray]]) -> tuple[list[MacCount], int | None]:
    """Run an ONNX graph once per feed on onnxruntime's CPU provider with profiling on; count its work per run.

    Graph optimisation and weight pre-packing are off: the former rewrites convolutions into onnxruntime's
    blocked layout (channels padded to the block size), the latter drops pre-packed weights from the recorded
    inputs (ConvTranspose, Gemm, MatMul). Also returns the intra-op thread count the session used (None if unseen).
    """
    with tempfile.TemporaryDirectory(prefix="blur2seq-profile-") as directory:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(directory) / "profile")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.add_session_config_entry("session.disable_prepacking", "1")
        session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        try:
            for feed in feeds:
                session.run(None, dict(feed))
        finally:
            trace = Path(session.end_profiling())
            del session
        events = json.loads((trace if trace.is_absolute() else Path(directory) / trace.name).read_text())
    counts = macs_from_trace(events)
    if len(counts) != len(feeds):
        raise RuntimeError(f"{graph}: the onnxruntime profile holds {len(counts)} runs, {len(feeds)} were made")
    return counts, _trace_threads(events)


# ---------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class StageResult:
    """Wall times of one stage (seconds, each timed run) and the multiply-accumulates it does (None: not counted)."""

    stage: str
    times_s: tuple[float, ...]
    gmac: float | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def max_s(self) -> float:
        return max(self.times_s)

    @property
    def gflop_per_s(self) -> float | None:
        """Achieved GFLOP/s at the median (2 FLOP per multiply-accumulate)."""
        return None if self.gmac is None else 2 * self.gmac / self.median_s


@dataclass(frozen=True)
class SizeResult:
    """Every stage at one image size, and the per-graph counts behind the GMAC column."""

    height: int
    width: int
    stages: tuple[StageResult, ...]
    macs: dict[str, MacCount] = field(default_factory=dict)

    def stage(self, name: str) -> StageResult:
        return next(stage for stage in self.stages if stage.stage == name)


@dataclass(frozen=True)
class BenchmarkResult:
    """A whole benchmark run: the setting, the machine and the figures per size."""

    bundle: str
    architecture: dict[str, Any]
    backend: str
    threads: str
    warmup: int
    repeats: int
    machine: dict[str, Any]
    sizes: tuple[SizeResult, ...]
    command: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready: raw times per run as well as the summaries."""
        return {
            "command": self.command,
            "bundle": self.bundle,
            "architecture": self.architecture,
            "backend": self.backend,
            "threads": self.threads,
            "warmup": self.warmup,
            "repeats": self.repeats,
            "machine": self.machine,
            "mac_counting": "Conv, ConvTranspose, MatMul, Gemm from an onnxruntime profile; GFLOP = 2 x GMAC",
            "sizes": [
                {
                    "height": size.height,
                    "width": size.width,
                    "stages": [
                        {
                            "stage": stage.stage,
                            "label": STAGES[stage.stage],
                            "times_s": list(stage.times_s),
                            "median_s": stage.median_s,
                            "min_s": stage.min_s,
                            "max_s": stage.max_s,
                            "gmac": stage.gmac,
                            "gflop": None if stage.gmac is None else 2 * stage.gmac,
                            "gflop_per_s": stage.gflop_per_s,
                        }
                        for stage in size.stages
                    ],
                    "macs_by_op": {role: count.by_op for role, count in size.macs.items()},
                    "uncounted_nodes": {role: count.uncounted for role, count in size.macs.items()},
                }
                for size in self.sizes
            ],
        }

    def to_markdown(self) -> str:
        """A header with the setting and machine, then one table per size."""
        machine = self.machine
        lines = [
            "# Blur2Seq runtime benchmark",
            "",
            f"- command: `{self.command}`" if self.command else "- command: (called from Python)",
            f"- bundle: `{self.bundle}` ({_architecture_text(self.architecture)})",
            f"- machine: {machine['cpu_count']} CPUs ({machine['usable_cpus']} usable), {machine['cpu_model']}, "
            f"{machine['platform']}",
            f"- load average (1, 5, 15 min): {machine['load_average']} at start, "
            f"{machine.get('load_average_end', 'unknown')} at end (the end figure includes this benchmark)",
            f"- software: Python {machine['python']}, onnxruntime {machine['onnxruntime']}, numpy "
            f"{machine['numpy']}, OpenCV {machine['opencv']}",
            f"- backend: {self.backend}; intra-op threads: {self.threads}; {self.warmup} warm-up, "
            f"{self.repeats} timed rounds (every stage once per round, interleaved); times in ms",
            "- GMAC: multiply-accumulates of Conv, ConvTranspose, MatMul and Gemm as profiled by onnxruntime "
            "(GridSample, the blur model's warps, is not counted); GFLOP/s = 2 x GMAC / median",
        ]
        for size in self.sizes:
            lines += [
                "",
                f"## {size.height}x{size.width} (height x width)",
                "",
                "| stage | median ms | min ms | max ms | GMAC | GFLOP/s |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for stage in size.stages:
                gmac = "-" if stage.gmac is None else f"{stage.gmac:.2f}" if stage.gmac >= 1 else f"{stage.gmac:.4f}"
                rate = "-" if stage.gflop_per_s is None else f"{stage.gflop_per_s:.1f}"
                lines.append(
                    f"| {STAGES[stage.stage]} | {stage.median_s * 1e3:.1f} | {stage.min_s * 1e3:.1f} | "
                    f"{stage.max_s * 1e3:.1f} | {gmac} | {rate} |"
                )
            missing = {role: count.uncounted for role, count in size.macs.items() if count.uncounted}
            if missing:
                lines += ["", f"Nodes the profile gave no shapes for (GMAC is a lower bound): {missing}"]
        return "\n".join(lines) + "\n"


def _architecture_text(architecture: Mapping[str, Any]) -> str:
    parts = []
    for role, settings in architecture.items():
        if isinstance(settings, Mapping):
            parts.append(role + " " + " ".join(f"{key}={value}" for key, value in settings.items()))
    return "; ".join(parts) or "architecture not recorded"


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: CPUs, their model, the OS and library versions, and how busy the machine was."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "load_average": load_average(),
    }


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages: above the CPU count, other work competed for the cores."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


# ---------------------------------------------------------------------------------------------------------------
# Inputs and timing


def synthetic_image(height: int, width: int) -> np.ndarray:
    """A deterministic smooth HxWx3 float32 RGB image in [0, 1]: crossed waves and a gradient, like a photo."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    y /= max(height - 1, 1)
    x /= max(width - 1, 1)
    channels = [
        0.5 + 0.3 * np.sin(2 * np.pi * (1.5 * x + 0.7 * y) + phase) + 0.15 * np.cos(2 * np.pi * 3.1 * y * x + phase)
        for phase in (0.0, 1.3, 2.6)
    ]
    return np.clip(np.dstack(channels), 0, 1).astype(np.float32)


def synthetic_trajectory(n_positions: int, amplitude: float = TRAJECTORY_RAD) -> np.ndarray:
    """A small smooth camera-shake path `(P, 3)` float32 radians (pitch, yaw, roll) within +-`amplitude`."""
    t = np.linspace(-1.0, 1.0, n_positions)
    return (amplitude * np.stack([t, np.sin(np.pi * t), 0.3 * t * t], axis=1)).astype(np.float32)


def graph_feeds(bundle: Bundle, height: int, width: int) -> dict[str, dict[str, np.ndarray]]:
    """The inputs of each bundle graph at one size: synthetic image, default intrinsics, small trajectory, sigma."""
    batch = np.ascontiguousarray(synthetic_image(height, width).transpose(2, 0, 1)[None])
    camera = camera_model.intrinsics(height, width)[None].astype(np.float32)
    trajectory = synthetic_trajectory(bundle.n_positions)[None]
    return {
        "trajectory": {"image": batch, "focal_length": camera[:, 0, 0].copy()},
        "restoration": {
            "blurry": batch,
            "trajectory": trajectory,
            "intrinsics": camera,
            "sigma": np.array([bundle.default_sigma], np.float32),
        },
        "sequence": {"sharp": batch, "trajectory": trajectory, "intrinsics": camera},
        REFINE_GRAPH: {
            "blurry": batch,
            "latent": batch,
            "trajectory": trajectory,
            "intrinsics": camera,
            "mask": np.ones((1, 1, height, width), np.float32),
        },
    }


def warp_feed(height: int, width: int, n_positions: int) -> dict[str, np.ndarray]:
    """One blur-operator call's inputs: the synthetic image and a grid of where the synthetic trajectory's poses
    carry each pixel, clipped into the image (the graphs' grids hold in-range positions too)."""
    rows, columns = np.mgrid[0:height, 0:width]
    pixels = np.stack([columns.ravel(), rows.ravel()], axis=1)
    camera = camera_model.intrinsics(height, width)
    paths = camera_model.point_paths(synthetic_trajectory(n_positions), camera, pixels)  # (P, H*W, 2)
    x = np.clip(paths[..., 0], 0, width - 1) * (2 / (width - 1)) - 1
    y = np.clip(paths[..., 1], 0, height - 1) * (2 / (height - 1)) - 1
    grid = np.stack([x, y], axis=-1).reshape(1, n_positions * height, width, 2).astype(np.float32)
    return {"image": np.ascontiguousarray(synthetic_image(height, width).transpose(2, 0, 1)[None]), "grid": grid}


def warp_sessions(n_positions: int, threads: int | None) -> dict[str, onnxruntime.InferenceSession]:
    """onnxruntime CPU sessions of one blur-operator call in the bundle graphs' form (GridSample) and in the form
    the CPU provider runs (`ort_warps.deform_warps`), by stage name."""
    options = session_options(threads)
    model = averaged_warp_model(n_positions)
    forms = {
        "warp_gridsample": model,
        "warp_deformconv": deform_warps(averaged_warp_model(n_positions), n_positions)[0],
    }
    return {
        stage: onnxruntime.InferenceSession(form.SerializeToString(), options, providers=["CPUExecutionProvider"])
        for stage, form in forms.items()
    }


def time_rounds(
    works: Mapping[str, Callable[[], object]], warmup: int, repeats: int, progress: Log = lambda _: None
) -> dict[str, tuple[float, ...]]:
    """Wall seconds of each work over `repeats` rounds that run every work once, in order, after `warmup` rounds.

    Interleaving the stages spreads a burst of load from elsewhere over all of them instead of one, so the
    ratios between stages within a run hold up on a shared machine.
    """
    times: dict[str, list[float]] = {name: [] for name in works}
    for round_number in range(warmup + repeats):
        timed = round_number >= warmup
        progress(f"round {round_number - warmup + 1}/{repeats}" if timed else f"warm-up {round_number + 1}/{warmup}")
        for name, work in works.items():
            started = time.perf_counter()
            work()
            if timed:
                times[name].append(time.perf_counter() - started)
    return {name: tuple(values) for name, values in times.items()}


def _graph_work(
    runner: Runner, feed: Mapping[str, np.ndarray], outputs: dict[str, dict[str, np.ndarray]], role: str
) -> Callable[[], None]:
    """Run one graph; its outputs are kept in `outputs[role]` for the stages after it."""
    shapes = {name: value.shape for name, value in feed.items()}

    def work() -> None:
        runner.set_shapes(shapes)
        outputs[role] = runner.run(feed)

    return work


def _io_work(directory: Path, image: np.ndarray, restored: Callable[[], np.ndarray]) -> Callable[[], None]:
    """Decode a PNG of the input and encode the latest restored image as PNG, as `python -m runtime.deblur` does."""
    source = directory / "input.png"
    media.write_image(source, media.to_file_pixels(image))
    target = directory / "restored.png"

    def work() -> None:
        picture = media.read_image(source)
        media.write_image(target, media.to_file_pixels(np.clip(restored(), 0, 1), picture))

    return work


def _end_to_end_work(deblurrer: Deblurrer, image: np.ndarray) -> Callable[[], None]:
    """A capture app's frame: uint8 BGR in, restored uint8 BGR out, then the sharp frames of the result."""
    frame = media.to_file_pixels(image)

    def work() -> None:
        result = deblurrer(frame)
        sharp = result.restored[..., ::-1].astype(np.float32) * np.float32(1 / 255)
        deblurrer.sequence(sharp, result.trajectory, result.intrinsics)

    return work


def _refinement_work(runners: Mapping[str, Runner], feed: Mapping[str, np.ndarray]) -> Callable[[], None]:
    """A whole refinement with the default settings, from a start 20% off the trajectory that blurred the image
    (refine graph and sequence graph, as `Deblurrer` runs it)."""
    blurry, latent = feed["blurry"], np.clip(feed["latent"], 0, 1)
    start, camera = 0.8 * feed["trajectory"][0], feed["intrinsics"][0]
    run_refine, run_sequence = graph_function(runners[REFINE_GRAPH]), graph_function(runners["sequence"])

    def work() -> None:
        refine_trajectory(run_refine, blurry, latent, start, camera, REFINE_SETTINGS, run_sequence=run_sequence)

    return work


def _stage_works(
    runners: Mapping[str, Runner],
    deblurrer: Deblurrer,
    feeds: Mapping[str, Mapping[str, np.ndarray]],
    image: np.ndarray,
    directory: Path,
    warps: Mapping[str, onnxruntime.InferenceSession],
    warp_inputs: Mapping[str, np.ndarray],
) -> dict[str, Callable[[], object]]:
    """The work of every stage at one size, in `STAGES` order (I/O encodes the restoration stage's latest output).

    The refine stages (when there is a refine runner) use the sequence stage's reblurred image as the blurry one.
    """
    outputs: dict[str, dict[str, np.ndarray]] = {}
    works: dict[str, Callable[[], object]] = {
        role: _graph_work(runners[role], feeds[role], outputs, role) for role in GRAPHS
    }
    if REFINE_GRAPH in runners:
        works["sequence"]()
        feed = {**feeds[REFINE_GRAPH], "blurry": np.ascontiguousarray(outputs["sequence"]["reblurred"])}
        works["refine"] = _graph_work(runners[REFINE_GRAPH], feed, outputs, REFINE_GRAPH)
        works["refinement"] = _refinement_work(runners, feed)
    for stage, session in warps.items():
        works[stage] = partial(session.run, None, warp_inputs)
    works["io"] = _io_work(directory, image, lambda: outputs["restoration"]["restored"][0].transpose(1, 2, 0))
    works["end_to_end"] = _end_to_end_work(deblurrer, image)
    return works


# ---------------------------------------------------------------------------------------------------------------
# The benchmark


def run_benchmark(
    bundle: str | Path | Bundle,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    backend: str = "ort-cpu",
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = None,
    command: str | None = None,
    log: Log = _stderr,
    torch_reference: bool = False,
) -> BenchmarkResult:
    """Time every stage at each `(height, width)` on one backend and count each graph's multiply-accumulates.

    `threads`: onnxruntime intra-op threads for the timed runs (None: onnxruntime's default, reported as seen).
    `torch_reference`: also time PyTorch's blur operator on the warp stages' inputs (in a subprocess, after the
    rounds of each size, with the same threads and repeats).
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats {repeats}, warmup {warmup}")
    if not sizes:
        raise ValueError("no sizes to benchmark")
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    minimum = int(bundle.manifest.get("min_side", 1))
    for height, width in sizes:
        if min(height, width) < minimum:
            raise ValueError(f"size {height}x{width}: the bundle needs at least {minimum} px on each side")

    machine = machine_facts()
    feeds = {size: graph_feeds(bundle, *size) for size in sizes}
    graphs = (*GRAPHS, REFINE_GRAPH) if REFINE_GRAPH in bundle.manifest["graphs"] else GRAPHS
    macs: dict[tuple[int, int], dict[str, MacCount]] = {size: {} for size in sizes}
    threads_seen: int | None = None
    for role in graphs:
        log(f"counting multiply-accumulates: {role} graph, one profiled run per size")
        counts, seen = profile_macs(bundle.graph_path(role), [feeds[size][role] for size in sizes])
        threads_seen = threads_seen or seen
        for size, count in zip(sizes, counts, strict=True):
            macs[size][role] = count

    times: dict[tuple[int, int], dict[str, tuple[float, ...]]] = {}
    name, runners = load_runners(bundle, graphs, BackendSettings(backend, threads=threads), log)
    whole = RestoreSettings(tile_side=None)
    try:
        with (
            Deblurrer(bundle, BackendSettings(name, threads=threads), whole, log=log) as deblurrer,
            tempfile.TemporaryDirectory(prefix="blur2seq-benchmark-") as directory,
        ):
            warps = warp_sessions(bundle.n_positions, threads)
            for size in sizes:
                works = _stage_works(
                    runners,
                    deblurrer,
                    feeds[size],
                    synthetic_image(*size),
                    Path(directory),
                    warps,
                    warp_feed(*size, bundle.n_positions),
                )
                label = f"{size[0]}x{size[1]}"
                log(
                    f"{label}: {warmup} warm-up + {repeats} timed rounds, each stage once per round: {', '.join(works)}"
                )
                times[size] = time_rounds(works, warmup, repeats, _prefixed(log, f"{label}: "))
                if torch_reference:
                    log(f"{label}: PyTorch blur operator: python -m models.benchmark warp")
                    torch_times, why_not = comparison.torch_warp_times(*size, threads or os.cpu_count() or 1, repeats)
                    if torch_times:
                        times[size]["warp_torch"] = torch_times
                    else:
                        log(f"{label}: PyTorch blur operator not timed: {why_not}")
    finally:
        for runner in runners.values():
            runner.close()

    results = []
    for size in sizes:
        gmac = {role: macs[size][role].gmac for role in graphs}
        gmac_of = {
            **gmac,
            "refinement": None,
            "warp_gridsample": None,
            "warp_deformconv": None,
            "warp_torch": None,
            "io": None,
            "end_to_end": sum(gmac[role] for role in GRAPHS),
        }
        stages = tuple(
            StageResult(stage, times[size][stage], gmac_of[stage]) for stage in STAGES if stage in times[size]
        )
        results.append(SizeResult(size[0], size[1], stages, macs[size]))
    default_threads = f"{threads_seen} seen in the profile" if threads_seen else "not seen"
    return BenchmarkResult(
        bundle=str(bundle.path),
        architecture=dict(bundle.manifest.get("architecture", {})),
        backend=name,
        threads=str(threads) if threads is not None else f"onnxruntime default ({default_threads})",
        warmup=warmup,
        repeats=repeats,
        machine={**machine, "load_average_end": load_average()},
        sizes=tuple(results),
        command=command,
    )


# ---------------------------------------------------------------------------------------------------------------
# Command line


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """`"256x256,512x384"` -> `[(256, 256), (512, 384)]` (height x width); ValueError naming the bad item."""
    sizes = []
    for item in text.split(","):
        sides = item.strip().lower().split("x")
        try:
            height, width = (int(side) for side in sides)
        except ValueError:
            raise ValueError(f"--sizes {text!r}: {item.strip()!r} is not HEIGHTxWIDTH (e.g. 256x256,512x512)") from None
        if height < 1 or width < 1:
            raise ValueError(f"--sizes {text!r}: {item.strip()!r} has a side below 1 px")
        sizes.append((height, width))
    return sizes


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m runtime.benchmark", description=__doc__.splitlines()[0])
    parse.add_argument("--engine", type=Path, required=True, help="bundle directory")
    parse.add_argument("--sizes", default="256x256,512x512", help="HEIGHTxWIDTH,... (default 256x256,512x512)")
    parse.add_argument("--backend", choices=NAMES, default="ort-cpu", help="default ort-cpu")
    parse.add_argument("--repeats", type=int, default=5, help="timed runs per stage (default 5)")
    parse.add_argument("--warmup", type=int, default=1, help="untimed runs before them (default 1)")
    parse.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: one per core)")
    parse.add_argument("--size", dest="sizes", help="alias of --sizes")
    parse.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    parse.add_argument("--markdown", type=Path, metavar="FILE", help="also write the tables to a file")
    compare = parse.add_argument_group("comparison of backends and precisions (runtime.tools.comparison)")
    compare.add_argument("--backends", help="comma-separated backends to compare (default: --backend)")
    compare.add_argument("--precisions", help="comma-separated precisions to compare, e.g. fp32,bf16,int8-cpu")
    compare.add_argument(
        "--torch-reference",
        action="store_true",
        help="also time the PyTorch reference: end to end, and its blur operator beside the warp stages",
    )
    compare.add_argument("--plot", type=Path, metavar="PNG", help="bar chart of the compared latencies")
    return parse


def run_comparisons(args: argparse.Namespace, result: BenchmarkResult) -> list[comparison.Comparison]:
    """The side-by-side comparison at every size, with the work counted by the stage benchmark."""
    names = [name.strip() for name in (args.backends or args.backend).split(",") if name.strip()]
    precisions = [name.strip() for name in (args.precisions or "fp32").split(",") if name.strip()]
    unknown = [name for name in names if name not in NAMES or name == "auto"]
    if unknown:
        raise ValueError(f"--backends: unknown {', '.join(unknown)}; choose from {', '.join(NAMES[1:])}")
    bundle = load_bundle(args.engine)
    threads = args.threads or os.cpu_count() or 1
    comparisons = []
    for size in result.sizes:
        gmac = sum(size.macs[role].gmac for role in comparison.REFERENCE_ROLES)
        configurations = [(name, precision) for name in names for precision in precisions]
        comparisons.append(
            comparison.compare(
                bundle,
                synthetic_image(size.height, size.width),
                configurations,
                gmac,
                threads,
                repeats=args.repeats,
                warmup=args.warmup,
                torch_reference=args.torch_reference,
                log=_prefixed(_stderr, f"{size.height}x{size.width}: "),
            )
        )
    return comparisons


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    try:
        sizes = parse_sizes(args.sizes)
        result = run_benchmark(
            args.engine,
            sizes,
            backend=args.backend,
            repeats=args.repeats,
            warmup=args.warmup,
            threads=args.threads,
            command=shlex.join(["python", "-m", "runtime.benchmark", *argv]),
            torch_reference=args.torch_reference,
        )
    except (BundleError, BackendError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = result.to_markdown()
    print(table, end="", flush=True)
    report = result.to_dict()
    if args.backends or args.precisions:
        try:
            comparisons = run_comparisons(args, result)
        except (BundleError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        sections = "".join("\n" + comparison.to_markdown() for comparison in comparisons)
        print(sections, end="")
        table += sections
        report["comparisons"] = [comparison.to_dict() for comparison in comparisons]
    try:
        if args.markdown:
            media.write_bytes(args.markdown, table.encode())
        if args.json:
            media.write_bytes(args.json, (json.dumps(report, indent=2) + "\n").encode())
        if args.plot and (args.backends or args.precisions):
            bars = [(f"{c.height}x{c.width} {row.label}", row.median_s) for c in comparisons for row in c.rows]
            chart = charts.latency_chart([(label, seconds) for label, seconds in bars if seconds is not None])
            media.write_image(args.plot, chart)
    except (OSError, media.MediaError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
