"""Every backend and precision side by side on one bundle, against the PyTorch reference and the hardware's floor.

    python -m runtime.benchmark --engine BUNDLE --size 512x512 --backends ort-cpu,openvino \
        --precisions fp32,bf16,int8-cpu [--torch-reference]

Per configuration (backend x precision that can run here; the others are listed with the reason): the median
end-to-end latency of `Deblurrer.restore` on a smooth synthetic image (trajectory net, then restoration) after
warm-up, throughput, the peak memory it takes (in a fresh process: peak resident size after loading it and restoring
one image, minus that before loading), and the restored image of that fresh process's run compared with onnxruntime
FP32's (PSNR). Rounds are
interleaved over configurations, so load from elsewhere spreads over all of them. Beside them, in the same run:

- the PyTorch reference (eager FP32, the same threads, random weights of the bundle's architecture), timed in a
  subprocess (`python -m models.benchmark reference`) so this process never imports torch;
- the convolutions-only floor: the time onnxruntime FP32 spends in the convolution kernels of the two graphs,
  read from its profiler, with every other op removed from the sum;
- this machine's measured matrix-multiply peak (numpy float32 GEMM, the same thread count), and the fraction of it
  each configuration reaches on the graphs' multiply-accumulates (2 FLOP each).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from runtime.core.backends import BackendSettings
from runtime.core.backends.base import BackendError
from runtime.core.bundle import Bundle
from runtime.core.deblurrer import Deblurrer, RestoreSettings
from runtime.tools import metrics, traces
from runtime.tools.feeds import image_feeds, synthetic_trajectory

Log = Callable[[str], object]
#: Kernels the convolution floor sums (onnxruntime names them by op, fused or quantised).
CONVOLUTION_KERNELS = ("Conv", "FusedConv", "ConvTranspose", "QLinearConv", "NhwcFusedConv", "ConvInteger")
REFERENCE_ROLES = ("trajectory", "restoration")


@dataclass(frozen=True)
class Row:
    """One configuration's figures (None where it could not run)."""

    backend: str
    precision: str
    skipped: str | None = None
    times_s: tuple[float, ...] = ()
    peak_memory_mib: float | None = None
    psnr_vs_fp32: float | None = None
    #: The bundle's accuracy gate for this precision: "passed", "FAILED" or "-" (none: fp32, bf16).
    gate: str = "-"

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.times_s) if self.times_s else None

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}"


@dataclass
class Comparison:
    """The whole side-by-side run."""

    height: int
    width: int
    threads: int
    gmac: float
    rows: list[Row] = field(default_factory=list)
    #: Every timed run of the PyTorch reference (empty when it did not run; `torch_skipped` says why).
    torch_reference_times_s: tuple[float, ...] = ()
    torch_skipped: str | None = None
    convolution_floor_s: float | None = None
    matmul_peak_gflops: float | None = None

    @property
    def torch_reference_s(self) -> float | None:
        """The PyTorch reference's median (None when it did not run)."""
        return statistics.median(self.torch_reference_times_s) if self.torch_reference_times_s else None

    def row(self, backend: str, precision: str) -> Row | None:
        return next((r for r in self.rows if (r.backend, r.precision) == (backend, precision)), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{key: value for key, value in asdict(self).items() if key != "rows"},
            "torch_reference_s": self.torch_reference_s,
            "rows": [{**asdict(row), "median_s": row.median_s} for row in self.rows],
        }

    def to_markdown(self) -> str:
        baseline = self.row("ort-cpu", "fp32")
        base = baseline.median_s if baseline is not None else None
        lines = [
            f"## Backends and precisions, {self.height}x{self.width}, {self.threads} threads",
            "",
            "End to end = trajectory net + restoration (`Deblurrer.restore`), median of the timed rounds (and their "
            "spread: a wide one says the figure is not settled).",
            "",
            "| configuration | median ms | min-max ms | images/s | vs ort-cpu fp32 | GFLOP/s | of matmul peak "
            "| peak memory MiB | PSNR vs fp32 dB | accuracy gate |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in self.rows:
            if row.median_s is None:
                lines.append(f"| {row.label} | skipped: {row.skipped} | | | | | | | | |")
            else:
                lines.append(self._line(row.label, row.times_s, base, row.peak_memory_mib, row.psnr_vs_fp32, row.gate))
        if self.torch_reference_times_s:
            lines.append(self._line("PyTorch reference (eager fp32)", self.torch_reference_times_s, base))
        else:
            lines.append(f"| PyTorch reference | skipped: {self.torch_skipped} | | | | | | | | |")
        if self.convolution_floor_s is not None:
            lines.append(self._line("convolutions alone (ort-cpu fp32 kernels)", (self.convolution_floor_s,), base))
        lines += [
            "",
            f"Work: {self.gmac:.2f} GMAC (Conv, ConvTranspose, MatMul, Gemm of the two graphs). Matrix-multiply peak "
            f"of this machine: {self.matmul_peak_gflops or float('nan'):.1f} GFLOP/s (numpy float32 GEMM, "
            f"{self.threads} threads).",
        ]
        return "\n".join(lines) + "\n"

    def _line(
        self,
        label: str,
        times: Sequence[float],
        base: float | None,
        memory: float | None = None,
        psnr: float | None = None,
        gate: str = "-",
    ) -> str:
        median = statistics.median(times)
        gflops = 2 * self.gmac / median
        cells = [
            label,
            f"{median * 1e3:.1f}",
            f"{min(times) * 1e3:.0f}-{max(times) * 1e3:.0f}" if len(times) > 1 else "-",
            f"{1 / median:.2f}",
            f"{base / median:.2f}x" if base else "-",
            f"{gflops:.1f}",
            f"{gflops / self.matmul_peak_gflops:.1%}" if self.matmul_peak_gflops else "-",
            "-" if memory is None else f"{memory:.0f}",
            "-" if psnr is None else ("inf" if np.isinf(psnr) else f"{psnr:.1f}"),
            gate,
        ]
        return "| " + " | ".join(cells) + " |"


def compare(
    bundle: Bundle,
    image: np.ndarray,
    configurations: Sequence[tuple[str, str]],
    gmac: float,
    threads: int,
    repeats: int = 3,
    warmup: int = 1,
    torch_reference: bool = True,
    log: Log = lambda _: None,
) -> Comparison:
    """Time every configuration on `image` (HxWx3 float32 RGB), interleaved, with the references beside them."""
    height, width = image.shape[:2]
    comparison = Comparison(height, width, threads, gmac)
    deblurrers: dict[tuple[str, str], Deblurrer] = {}
    rows: dict[tuple[str, str], Row] = {}
    reference_output: np.ndarray | None = None
    try:
        for backend, precision in [("ort-cpu", "fp32"), *[c for c in configurations if c != ("ort-cpu", "fp32")]]:
            log(f"loading {backend} {precision}")
            try:
                deblurrer, memory, output = _load_and_measure(bundle, backend, precision, threads, image)
            except (BackendError, ValueError) as error:
                rows[(backend, precision)] = Row(backend, precision, skipped=" ".join(str(error).split()))
                continue
            reference_output = output if reference_output is None else reference_output
            deblurrers[(backend, precision)] = deblurrer
            psnr = metrics.psnr(np.clip(output, 0, 1), np.clip(reference_output, 0, 1))
            gate = bundle.precisions.get(precision, {}).get("gate")
            verdict = "-" if gate is None else "passed" if gate.get("passed") else "FAILED"
            rows[(backend, precision)] = Row(backend, precision, None, (), memory, psnr, verdict)
        times: dict[tuple[str, str], list[float]] = {key: [] for key in deblurrers}
        for round_number in range(warmup + repeats):
            log(f"round {round_number + 1}/{warmup + repeats}" + (" (warm-up)" if round_number < warmup else ""))
            for key, deblurrer in deblurrers.items():
                started = time.perf_counter()
                deblurrer.restore(image)
                if round_number >= warmup:
                    times[key].append(time.perf_counter() - started)
    finally:
        for deblurrer in deblurrers.values():
            deblurrer.close()
    wanted = {("ort-cpu", "fp32"), *configurations}
    for key, row in rows.items():
        if key in wanted:
            comparison.rows.append(Row(**{**asdict(row), "times_s": tuple(times.get(key, ()))}))
    log("convolution floor: profiling onnxruntime fp32")
    comparison.convolution_floor_s = convolution_floor_s(bundle, image, threads)
    log("matrix-multiply peak: numpy float32 GEMM")
    comparison.matmul_peak_gflops = matmul_peak_gflops(threads)
    if torch_reference:
        log("PyTorch reference: python -m models.benchmark reference")
        comparison.torch_reference_times_s, comparison.torch_skipped = torch_reference_times(
            bundle, height, width, threads, repeats
        )
    else:
        comparison.torch_skipped = "not asked for (--torch-reference)"
    return comparison


def _load_and_measure(
    bundle: Bundle, backend: str, precision: str, threads: int, image: np.ndarray
) -> tuple[Deblurrer, float | None, np.ndarray]:
    """Load a configuration here (for the timed rounds) and measure it once in a fresh process: (the Deblurrer,
    its peak memory in MiB, its restored image)."""
    settings = BackendSettings(backend, precision, force_precision=True, threads=threads)
    deblurrer = Deblurrer(bundle, settings, RestoreSettings(tile_side=None), log=lambda _: None)
    try:
        memory, output = measure_in_fresh_process(bundle.path, backend, precision, threads, image)
    except BaseException:
        deblurrer.close()
        raise
    return deblurrer, memory, output


def measure_in_fresh_process(
    bundle: Path, backend: str, precision: str, threads: int, image: np.ndarray
) -> tuple[float | None, np.ndarray]:
    """Load the configuration in a fresh process and restore `image` once: (its peak resident memory in MiB minus
    that before loading, with Python, numpy and the runtime imported; None off Linux), the restored image)."""
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from runtime.tools.comparison import memory_mib\n"
        "from runtime.core.backends import BackendSettings\n"
        "from runtime.core.deblurrer import Deblurrer, RestoreSettings\n"
        "image = np.load(sys.argv[5])\n"
        "before = memory_mib('VmHWM')\n"
        "backend = BackendSettings(sys.argv[2], sys.argv[3], force_precision=True, threads=int(sys.argv[4]))\n"
        "with Deblurrer(sys.argv[1], backend, RestoreSettings(tile_side=None), log=lambda _: None) as deblurrer:\n"
        "    np.save(sys.argv[6], deblurrer.restore(image).restored)\n"
        "after = memory_mib('VmHWM')\n"
        "print(-1 if before is None or after is None else after - before)\n"
    )
    with tempfile.TemporaryDirectory(prefix="blur2seq-measure-") as directory:
        image_file, output_file = Path(directory) / "image.npy", Path(directory) / "restored.npy"
        np.save(image_file, image)
        arguments = [str(bundle), backend, precision, str(threads), str(image_file), str(output_file)]
        done = subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise BackendError(f"{backend} {precision}: the measuring process failed ({last})")
        memory = float(done.stdout.strip().splitlines()[-1])
        return (memory if memory >= 0 else None), np.load(output_file)


def memory_mib(field_name: str) -> float | None:
    """A `/proc/self/status` memory field in MiB (None off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def convolution_floor_s(bundle: Bundle, image: np.ndarray, threads: int) -> float | None:
    """Seconds onnxruntime FP32 (fully optimised, `threads` threads) spends in convolution kernels over one run of
    the trajectory and the restoration graph, from its profiler (the second run of each; the first warms up)."""
    feeds = image_feeds(bundle, image, synthetic_trajectory(bundle.n_positions))
    total_us = 0
    with tempfile.TemporaryDirectory(prefix="blur2seq-floor-") as directory:
        for role in REFERENCE_ROLES:
            options = traces.profiling_options(Path(directory) / role)
            options.intra_op_num_threads = threads
            path = str(bundle.graph_path(role))
            session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            for _ in range(2):
                outputs = session.run(None, feeds[role])
            if role == "trajectory":
                feeds["restoration"]["trajectory"] = outputs[0]
            events = traces.read_trace(session.end_profiling(), Path(directory))
            total_us += _last_run_convolution_us(events)
    return total_us / 1e6 if total_us else None


def _last_run_convolution_us(events: list[dict[str, Any]]) -> int:
    """Microseconds of convolution kernels inside the last `model_run` of an onnxruntime profile."""
    start, end = traces.run_spans(events)[-1]
    return sum(int(e["dur"]) for e in traces.kernel_events(events, CONVOLUTION_KERNELS) if start <= int(e["ts"]) <= end)


def matmul_peak_gflops(threads: int, side: int = 2048, repeats: int = 5) -> float | None:
    """Best float32 GEMM rate of numpy on `threads` threads, in a subprocess (BLAS reads its thread count at start)."""
    code = (
        "import numpy as np, time\n"
        f"a = np.random.default_rng(0).random(({side}, {side}), dtype=np.float32); b = a.copy(); a @ b\n"
        f"best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range({repeats}))\n"
        f"print(2 * {side} ** 3 / best / 1e9)\n"
    )
    environment = {
        **os.environ,
        **{name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300)
    return float(done.stdout.strip()) if done.returncode == 0 else None


def torch_reference_times(
    bundle: Bundle, height: int, width: int, threads: int, repeats: int
) -> tuple[tuple[float, ...], str | None]:
    """Seconds of each timed run of the PyTorch reference (eager FP32, the bundle's architecture), or ((), why not)."""
    architecture = json.dumps(bundle.manifest.get("architecture", {}))
    return _torch_times("reference", height, width, threads, repeats, "--architecture", architecture)


def torch_warp_times(height: int, width: int, threads: int, repeats: int) -> tuple[tuple[float, ...], str | None]:
    """Seconds of each timed run of one PyTorch blur-operator call (`grid_sample` of 25 poses, then their mean) on
    the benchmark's warp inputs, or ((), why not)."""
    return _torch_times("warp", height, width, threads, repeats, "--json")


def _torch_times(
    mode: str, height: int, width: int, threads: int, repeats: int, *extra: str
) -> tuple[tuple[float, ...], str | None]:
    """`python -m models.benchmark MODE` in a subprocess (so this process never imports torch): its timed runs."""
    command = [
        sys.executable, "-m", "models.benchmark", mode, "--size", f"{height}x{width}", "--threads", str(threads),
        "--repeats", str(repeats), *extra,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return (), f"python -m models.benchmark {mode} failed ({last})"
    return tuple(float(seconds) for seconds in json.loads(done.stdout)["times_s"]), None
