"""`runtime.tools.benchmark_report`: the benchmark's figures as Markdown tables and JSON, on a made-up run."""

import json

import pytest

from runtime.tools.benchmark_report import BenchmarkResult, SizeResult, StageResult
from runtime.tools.benchmark_stages import STAGES
from runtime.tools.macs import MacCount

MACHINE = {
    "cpu_count": 4,
    "usable_cpus": 2,
    "cpu_model": "a CPU",
    "platform": "an OS",
    "python": "3.11.0",
    "onnxruntime": "1.0",
    "numpy": "2.0",
    "opencv": "4.0",
    "load_average": "0.10, 0.20, 0.30",
}


@pytest.fixture
def result() -> BenchmarkResult:
    stages = (
        StageResult("trajectory", (0.002, 0.001, 0.003), gmac=1.5),
        StageResult("restoration", (0.004,), gmac=0.0124),
        StageResult("io", (0.001, 0.002)),
    )
    macs = {"trajectory": MacCount({"Conv": 1_500_000_000}), "restoration": MacCount({"Conv": 12_400_000}, 2)}
    return BenchmarkResult(
        bundle="bundles/small",
        architecture={"trajectory": {"n_positions": 25}, "version": 3},
        backend="ort-cpu",
        threads="2",
        warmup=1,
        repeats=3,
        machine=MACHINE,
        sizes=(SizeResult(48, 64, stages, macs),),
    )


def test_a_stage_summarises_its_times_and_rate():
    stage = StageResult("trajectory", (0.002, 0.001, 0.003), gmac=1.5)
    assert (stage.median_s, stage.min_s, stage.max_s) == (0.002, 0.001, 0.003)
    assert stage.gflop_per_s == pytest.approx(1500.0)
    assert StageResult("io", (0.001,)).gflop_per_s is None


def test_the_markdown_holds_the_setting_and_one_row_per_stage(result):
    table = result.to_markdown()
    assert "- command: (called from Python)" in table
    assert "`bundles/small` (trajectory n_positions=25)" in table and "unknown at end" in table
    assert "## 48x64 (height x width)" in table
    assert f"| {STAGES['trajectory']} | 2.0 | 1.0 | 3.0 | 1.50 | 1500.0 |" in table
    assert f"| {STAGES['restoration']} | 4.0 | 4.0 | 4.0 | 0.0124 | 6.2 |" in table
    assert f"| {STAGES['io']} | 1.5 | 1.0 | 2.0 | - | - |" in table
    assert "no shapes for (GMAC is a lower bound): {'restoration': 2}" in table


def test_the_json_holds_raw_times_labels_and_counts(result):
    data = json.loads(json.dumps(result.to_dict()))
    (size,) = data["sizes"]
    assert [stage["label"] for stage in size["stages"]] == [
        STAGES[name] for name in ("trajectory", "restoration", "io")
    ]
    assert size["stages"][0]["times_s"] == [0.002, 0.001, 0.003] and size["stages"][0]["gflop"] == 3.0
    assert size["stages"][2]["gmac"] is None and size["stages"][2]["gflop_per_s"] is None
    assert size["macs_by_op"]["restoration"] == {"Conv": 12_400_000}
    assert size["uncounted_nodes"] == {"trajectory": 0, "restoration": 2}
    assert data["command"] is None and data["machine"] == MACHINE
