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

The work is counted (`runtime.tools.macs`), without torch or onnx, from an onnxruntime profile of one run of each
graph per size: multiply-accumulates of every Conv, ConvTranspose, MatMul and Gemm node, with the shapes it actually
ran at. That profiled session runs the graphs as the bundle stores them (no graph optimisation, no weight
pre-packing), so the count is the bundle's own, not that of onnxruntime's rewritten graph (which pads channels to
its block size). GFLOP = 2 x GMAC; GFLOP/s divides that by the stage's median time.

With `--backends` or `--precisions`, every configuration that can run is then compared end to end at each size
(`runtime.tools.comparison`): latency, throughput, peak memory, accuracy against FP32, the PyTorch reference, the
convolution floor and the machine's matrix-multiply peak; `--plot` draws the latencies as a bar chart.

These machines are noisy: compare figures within one run (ratios), not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime

from runtime.core.backends import NAMES, BackendSettings, load_runners
from runtime.core.backends.base import BackendError, Runner
from runtime.core.backends.ort import session_options
from runtime.core.backends.ort_warps import averaged_warp_model, deform_warps
from runtime.core.bundle import Bundle, BundleError, load_bundle
from runtime.core.deblurrer import Deblurrer, RestoreSettings
from runtime.core.refine import graph_function, refine_trajectory
from runtime.io import media
from runtime.tools import charts, comparison
from runtime.tools.benchmark_report import BenchmarkResult, SizeResult, StageResult
from runtime.tools.benchmark_stages import GRAPHS, REFINE_GRAPH, REFINE_SETTINGS, STAGES
from runtime.tools.feeds import graph_feeds, synthetic_image, warp_feed
from runtime.tools.machine import load_average, machine_facts
from runtime.tools.macs import MacCount, profile_macs

DEFAULT_SIZES = ((256, 256), (512, 512))

Log = Callable[[str], object]


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _prefixed(log: Log, prefix: str) -> Log:
    return lambda text: log(prefix + text)


# ---------------------------------------------------------------------------------------------------------------
# What each stage runs, and timing


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
