"""The figures of a `python -m runtime.benchmark` run: each stage's times and work per image size, with the
setting and the machine, as Markdown tables and as JSON."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.tools.benchmark_stages import STAGES
from runtime.tools.macs import MacCount


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
