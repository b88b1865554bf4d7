"""`runtime.tools.comparison`: every backend and precision side by side, with the references, on the small bundle."""

import json

import cv2
import numpy as np
import pytest

from runtime.core.backends import backends
from runtime.core.bundle import load_bundle
from runtime.tools import benchmark, comparison, feeds


@pytest.fixture(scope="module")
def compared(small_bundle) -> comparison.Comparison:
    configurations = [("ort-cpu", "fp32"), ("ort-cpu", "bf16"), ("openvino", "fp32")]
    image = feeds.synthetic_image(48, 64)
    return comparison.compare(load_bundle(small_bundle), image, configurations, gmac=0.01, threads=1, repeats=2)


def test_each_configuration_is_timed_or_says_why_not(compared):
    assert [row.label for row in compared.rows] == ["ort-cpu fp32", "ort-cpu bf16", "openvino fp32"]
    baseline, bf16, openvino = compared.rows
    assert len(baseline.times_s) == 2 and baseline.median_s > 0 and baseline.psnr_vs_fp32 == float("inf")
    assert bf16.median_s is None and "ort-cpu runs the bundle's ONNX graphs" in bf16.skipped
    if next(b for b in backends() if b.name == "openvino").unavailable_reason() is None:
        assert len(openvino.times_s) == 2 and openvino.psnr_vs_fp32 > 60  # the same FP32 graphs
    else:
        assert "OpenVINO is not installed" in openvino.skipped
    assert baseline.peak_memory_mib is not None and baseline.peak_memory_mib > 0


def test_the_references_are_measured_in_the_same_run(compared):
    assert len(compared.torch_reference_times_s) == 2, compared.torch_skipped
    assert compared.torch_reference_s == pytest.approx(np.median(compared.torch_reference_times_s))
    baseline = compared.rows[0].median_s
    assert 0 < compared.convolution_floor_s < baseline  # the convolutions are part of the whole
    assert compared.matmul_peak_gflops > 0.5


def test_the_report_holds_every_row(compared):
    table = compared.to_markdown()
    assert "## Backends and precisions, 48x64, 1 threads" in table
    assert "| ort-cpu fp32 |" in table and "| ort-cpu bf16 | skipped: " in table
    assert "| PyTorch reference (eager fp32) |" in table and "| convolutions alone" in table
    data = json.loads(json.dumps(compared.to_dict()))
    assert data["rows"][0]["median_s"] == pytest.approx(compared.rows[0].median_s)
    assert data["torch_reference_s"] == pytest.approx(compared.torch_reference_s)
    # Timed rows show their spread; the floor, measured once, does not.
    times = compared.rows[0].times_s
    assert f"| {min(times) * 1e3:.0f}-{max(times) * 1e3:.0f} |" in table
    assert [line for line in table.splitlines() if line.startswith("| convolutions alone")][0].split(" | ")[2] == "-"


def test_the_command_compares_plots_and_writes_json(small_bundle, tmp_path, capsys):
    arguments = ["--engine", str(small_bundle), "--sizes", "48x64", "--repeats", "1", "--warmup", "0", "--threads", "1"]
    extra = ["--backends", "ort-cpu", "--precisions", "fp32", "--plot", str(tmp_path / "chart.png")]
    code = benchmark.main([*arguments, *extra, "--json", str(tmp_path / "figures.json")])
    assert code == 0
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert [row["precision"] for row in figures["comparisons"][0]["rows"]] == ["fp32"]
    chart = cv2.imread(str(tmp_path / "chart.png"))
    assert chart is not None and chart.shape[1] > 400 and (chart < 250).any()
    assert "| ort-cpu fp32 |" in capsys.readouterr().out
    assert benchmark.main([*arguments, "--backends", "cuda"]) == 2
    assert "--backends: unknown cuda" in capsys.readouterr().err
