"""`python -m runtime.benchmark`: stage timings, multiply-accumulate counts checked by hand, CLI without torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.tools import benchmark, benchmark_stages
from runtime.tools.benchmark_report import BenchmarkResult
from tests.runtime.conftest import bundle_without_refine

#: Every stage a run times without `--torch-reference`.
WITHOUT_TORCH = [stage for stage in benchmark_stages.STAGES if stage != "warp_torch"]

REPO = Path(__file__).resolve().parents[3]


def conv_macs(height: int, width: int, c_out: int, c_in: int, kernel: int) -> int:
    """Multiply-accumulates of a dense convolution producing a `c_out x height x width` map."""
    return height * width * c_out * c_in * kernel * kernel


def small_restoration_conv_macs(height: int, width: int) -> int:
    """The Conv work of the `small_nets` restoration net, layer by layer (DESIGN.md 2a): nc=(4, 8, 8, 16), nb=1,
    n_iter=2 (3 prior passes), h_nc=8; sizes that are multiples of 8, so no padding."""
    c1, c2, c3, c4 = 4, 8, 8, 16
    levels = [(height >> k, width >> k) for k in range(4)]

    def resblock(level: int, channels: int) -> int:
        return 2 * conv_macs(*levels[level], channels, channels, 3)

    prior = (
        conv_macs(*levels[0], c1, 4, 3)  # m_head, 4 -> c1
        + resblock(0, c1) + conv_macs(*levels[1], c2, c1, 2)  # m_down1
        + resblock(1, c2) + conv_macs(*levels[2], c3, c2, 2)  # m_down2
        + resblock(2, c3) + conv_macs(*levels[3], c4, c3, 2)  # m_down3
        + resblock(3, c4)  # m_body
        + resblock(2, c3) + resblock(1, c2) + resblock(0, c1)  # ResBlocks of m_up3..1
        + conv_macs(*levels[0], 3, c1, 3)  # m_tail
    )  # fmt: skip
    hypanet = 2 * 8 + 8 * 8 + 8 * 3 * (2 + 1)  # 1x1 convs at 1x1: 2 -> 8 -> 8 -> 3(n+1)
    return 3 * prior + hypanet


def small_restoration_convtranspose_macs(height: int, width: int) -> int:
    """m_up3..1 transposed convs (2x2, stride 2): input elements x c_out x 4, three prior passes."""
    per_pass = (height // 8) * (width // 8) * 16 * 8 * 4 + (height // 4) * (width // 4) * 8 * 8 * 4
    per_pass += (height // 2) * (width // 2) * 8 * 4 * 4
    return 3 * per_pass


@pytest.fixture(scope="module")
def result(small_bundle) -> BenchmarkResult:
    return benchmark.run_benchmark(small_bundle, [(64, 64), (128, 128)], repeats=2, warmup=1, log=lambda _: None)


def test_every_stage_is_timed_at_every_size(result):
    assert [(size.height, size.width) for size in result.sizes] == [(64, 64), (128, 128)]
    assert result.backend == "ort-cpu" and result.repeats == 2 and result.warmup == 1
    for size in result.sizes:
        assert [stage.stage for stage in size.stages] == WITHOUT_TORCH
        for stage in size.stages:
            assert len(stage.times_s) == 2 and all(t > 0 for t in stage.times_s)
            assert stage.min_s <= stage.median_s <= stage.max_s
        for role in ("trajectory", "restoration"):
            assert size.stage(role).gmac > 0 and size.stage(role).gflop_per_s > 0
        assert size.stage("io").gmac is None and size.stage("io").gflop_per_s is None
        total = sum(size.stage(role).gmac for role in benchmark_stages.GRAPHS)
        assert size.stage("end_to_end").gmac == pytest.approx(total)
        assert all(count.uncounted == 0 for count in size.macs.values())


def test_the_refinement_is_timed_with_the_default_settings(result):
    steps = benchmark_stages.REFINE_SETTINGS.steps
    assert steps == 30 and benchmark_stages.REFINE_SETTINGS.scales == (0.25,)
    for size in result.sizes:
        # Two full-size runs of the refine graph (start and result) and 31 at a quarter of the size.
        assert size.stage("refinement").min_s > 1.5 * size.stage("refine").min_s
        assert size.stage("refinement").gmac is None


def test_a_bundle_without_the_refine_graph_is_benchmarked_without_it(small_bundle, tmp_path):
    bundle = bundle_without_refine(small_bundle, tmp_path)
    result = benchmark.run_benchmark(bundle, [(64, 64)], repeats=1, warmup=0, log=lambda _: None)
    assert [stage.stage for stage in result.sizes[0].stages] == [
        stage for stage in WITHOUT_TORCH if stage not in ("refine", "refinement")
    ]


def test_restoration_count_matches_the_architecture_and_scales_with_the_area(result):
    small, large = result.sizes
    for size in (small, large):
        counted = size.macs["restoration"].by_op
        assert counted["Conv"] == small_restoration_conv_macs(size.height, size.width)
        assert counted["ConvTranspose"] == small_restoration_convtranspose_macs(size.height, size.width)
    ratio = large.stage("restoration").gmac / small.stage("restoration").gmac
    assert ratio == pytest.approx(4.0, rel=1e-3)
    assert large.stage("trajectory").gmac > 3 * small.stage("trajectory").gmac


def test_json_and_markdown_hold_every_stage(result):
    data = json.loads(json.dumps(result.to_dict()))
    assert [size["height"] for size in data["sizes"]] == [64, 128]
    for size in data["sizes"]:
        assert [stage["stage"] for stage in size["stages"]] == WITHOUT_TORCH
        assert all(stage["median_s"] > 0 and len(stage["times_s"]) == 2 for stage in size["stages"])
    table = result.to_markdown()
    assert "## 64x64" in table and "## 128x128" in table and "onnxruntime" in table
    assert all(benchmark_stages.STAGES[stage] in table for stage in WITHOUT_TORCH)


def test_cli_writes_json_and_markdown(small_bundle, tmp_path, capsys):
    arguments = ["--engine", str(small_bundle), "--sizes", "64x64", "--warmup", "1", "--repeats", "2"]
    arguments += ["--json", str(tmp_path / "out.json"), "--markdown", str(tmp_path / "out.md")]
    assert benchmark.main(arguments) == 0
    printed = capsys.readouterr()
    table = (tmp_path / "out.md").read_text()
    assert table in printed.out and "python -m runtime.benchmark --engine" in table
    assert "| restoration graph |" in table and "64x64" in printed.err  # progress goes to stderr
    data = json.loads((tmp_path / "out.json").read_text())
    assert [stage["stage"] for stage in data["sizes"][0]["stages"]] == WITHOUT_TORCH
    assert data["machine"]["cpu_count"] >= 1 and data["command"].startswith("python -m runtime.benchmark")


@pytest.mark.parametrize("sizes", ["64by64", "64x", "0x64", "64x64x3", "64x64,,128x128"])
def test_bad_sizes_give_one_line_and_exit_2(small_bundle, capsys, sizes):
    assert benchmark.main(["--engine", str(small_bundle), "--sizes", sizes]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: --sizes")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--sizes", "16x64"], "at least 32 px"),
        (["--threads", "0"], "threads must be at least 1"),
        (["--repeats", "0"], "repeats >= 1"),
    ],
)
def test_other_bad_settings_give_one_line_and_exit_2(small_bundle, capsys, arguments, message):
    assert benchmark.main(["--engine", str(small_bundle), *arguments]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error


def test_a_missing_bundle_gives_one_line_and_exit_2(tmp_path, capsys):
    assert benchmark.main(["--engine", str(tmp_path / "absent")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not a bundle directory" in error


def test_with_the_torch_reference_pytorch_s_blur_operator_is_timed_beside_the_warps(small_bundle):
    result = benchmark.run_benchmark(
        small_bundle, [(48, 64)], repeats=2, warmup=0, threads=1, log=lambda _: None, torch_reference=True
    )
    (size,) = result.sizes
    stages = [stage.stage for stage in size.stages]
    assert stages.index("warp_torch") == stages.index("warp_deformconv") + 1
    torch_warp = size.stage("warp_torch")
    assert len(torch_warp.times_s) == 2 and all(t > 0 for t in torch_warp.times_s) and torch_warp.gmac is None
    assert "PyTorch grid_sample" in result.to_markdown()
