"""INT8 calibration of a small bundle: QDQ graphs for each target, the accuracy gate, the sensitivity report, and
the runtime's use (and refusal) of the variants."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from calibration import int8
from export.lint import lint_path
from models.make_pairs import make_pairs
from runtime.core.backends import BackendSettings
from runtime.core.bundle import load_bundle
from runtime.core.deblurrer import Deblurrer
from tests.conftest import run
from tests.runtime.conftest import smooth_bgr8, smooth_rgb


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Three smooth pictures and a file that is not an image."""
    folder = tmp_path_factory.mktemp("calibration-images")
    for seed in range(3):
        cv2.imwrite(str(folder / f"image{seed}.png"), smooth_bgr8(64, 80, seed=seed))
    (folder / "notes.png").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """Two 48x48 evaluation pairs blurred by a made-up shake (as `runtime.tools.evaluate` reads them)."""
    sources = tmp_path_factory.mktemp("pair-sources")
    cv2.imwrite(str(sources / "scene.png"), smooth_bgr8(64, 80, seed=7))
    angles = np.cumsum(0.004 * np.random.default_rng(1).standard_normal((30, 3)), axis=0)
    np.savetxt(sources / "shake.txt", np.hstack([np.zeros((30, 3)), angles]), delimiter=",", fmt="%.9f")
    folder = tmp_path_factory.mktemp("pairs")
    make_pairs([sources / "scene.png"], [sources / "shake.txt"], folder, crop=48, focal_length_scales=[1.0, 2.0],
               log=lambda _: None)  # fmt: skip
    return folder


def calibrated(small_bundle: Path, directory: Path, images: Path, **options) -> tuple[Path, dict]:
    bundle = Path(shutil.copytree(small_bundle, directory / "bundle"))
    pairs = options.pop("pairs", None)
    sensitivity = options.pop("sensitivity", None)
    entry = int8.calibrate(bundle, images, int8.Settings(**options), pairs, sensitivity, progress=lambda _: None)
    return bundle, entry


@pytest.fixture(scope="module")
def cpu_variant(small_bundle, images, pairs, tmp_path_factory):
    return calibrated(small_bundle, tmp_path_factory.mktemp("cpu"), images, samples=4, pairs=pairs)


def test_the_cpu_variant_is_recorded_and_runs(cpu_variant, images):
    bundle, entry = cpu_variant
    loaded = load_bundle(bundle)  # every new file is in the sha256 table
    assert loaded.precisions["int8-cpu"] == entry
    assert entry["graphs"] == {"trajectory": "trajectory.int8-cpu.onnx", "restoration": "restoration.int8-cpu.onnx"}
    calibration = entry["calibration"]
    assert (calibration["target"], calibration["method"], calibration["images_used"]) == ("cpu", "entropy", 3)
    assert calibration["activations"] == "uint8 asymmetric"
    rgb = smooth_rgb(48, 64, seed=3)
    with (
        Deblurrer(bundle, BackendSettings("ort-cpu"), log=lambda _: None) as fp32,
        Deblurrer(bundle, BackendSettings("ort-cpu", "int8-cpu"), log=lambda _: None) as reduced,
    ):
        expected, got = fp32.restore(rgb), reduced.restore(rgb)
    assert np.isfinite(got.restored).all() and not np.array_equal(got.restored, expected.restored)
    assert np.abs(got.restored - expected.restored).max() < 0.1  # INT8, not garbage
    assert np.abs(got.trajectory - expected.trajectory).max() < 0.05


def test_cpu_graphs_quantise_every_convolution_with_unsigned_activations(cpu_variant):
    bundle, entry = cpu_variant
    model = onnx.load(str(bundle / entry["graphs"]["restoration"]))
    kinds = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "GridSample"} <= kinds
    initializers = {item.name: item for item in model.graph.initializer}
    activation_zero_points = [
        initializers[node.input[2]] for node in model.graph.node if node.op_type == "QuantizeLinear"
    ]
    assert activation_zero_points and all(z.data_type == onnx.TensorProto.UINT8 for z in activation_zero_points)
    produced_by = {output: node for node in model.graph.node for output in node.output}
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            assert produced_by[node.input[1]].op_type == "DequantizeLinear", node.name  # INT8 weights
        if node.op_type == "GridSample":
            assert all(produced_by.get(name) is None or produced_by[name].op_type != "DequantizeLinear"
                       for name in node.input), node.name  # fmt: skip


def test_the_gate_is_measured_on_the_pairs(cpu_variant):
    gate = cpu_variant[1]["gate"]
    assert gate["measured_on"] == "pairs" and gate["samples"] == 2 and gate["max_loss_db"] == 0.5
    assert gate["loss_db"] == pytest.approx(gate["psnr_fp32"] - gate["psnr_int8"])
    assert gate["passed"] == (gate["loss_db"] <= 0.5)
    assert gate["trajectory_error_int8"] > 0 and "restored PSNR vs sharp" in gate["summary"]
    assert "sensitivity" not in cpu_variant[1] or not gate["passed"]


def test_the_tensorrt_variant_has_zero_zero_points_a_cache_and_passes_the_lint(small_bundle, images, tmp_path):
    bundle, entry = calibrated(small_bundle, tmp_path, images, target="tensorrt", method="minmax", samples=2)
    assert entry["gate"]["measured_on"] == "images" and entry["calibration"]["activations"] == "int8 symmetric"
    for role in int8.QUANTISED_ROLES:
        model = onnx.load(str(bundle / entry["graphs"][role]))
        points = int8.zero_points(model)
        assert points and set(points) == {0}
        cache = (bundle / f"{role}.int8-tensorrt.calibration.cache").read_text().splitlines()
        assert cache[0] == "TRT-85-EntropyCalibration2" and len(cache) > 3
        name, scale = cache[1].split(": ")
        assert name in {value for node in model.graph.node for value in node.input} and len(scale) == 8
    assert lint_path(bundle, "8.5") == []


@pytest.mark.slow
def test_a_failed_gate_is_refused_at_run_time_and_says_which_groups_matter(small_bundle, images, pairs, tmp_path):
    bundle, entry = calibrated(
        small_bundle, tmp_path, images, samples=2, pairs=pairs, max_loss_db=-1.0, keep_float=("p/m_head",)
    )
    assert entry["gate"]["passed"] is False and entry["calibration"]["keep_float"] == ["p/m_head"]
    rows = entry["sensitivity"]
    groups = int8.quantisable_groups(onnx.load(str(bundle / "restoration.onnx")))
    assert "p/m_head" in groups and "p/m_tail" in groups
    assert {row["keep_float"] for row in rows} >= set(groups) - {"p/m_head"}
    assert [row["psnr_vs_fp32"] for row in rows] == sorted((row["psnr_vs_fp32"] for row in rows), reverse=True)
    with pytest.raises(ValueError, match="int8-cpu graphs failed their accuracy gate .*--force-precision"):
        Deblurrer(bundle, BackendSettings("ort-cpu", "int8-cpu"), log=lambda _: None)
    forced_settings = BackendSettings("ort-cpu", "int8-cpu", force_precision=True)
    with Deblurrer(bundle, forced_settings, log=lambda _: None) as forced:
        assert np.isfinite(forced.restore(smooth_rgb(48, 64)).restored).all()
    head = [node for node in onnx.load(str(bundle / entry["graphs"]["restoration"])).graph.node
            if int8.layer_group(node.name) == "p/m_head" and node.op_type == "Conv"]  # fmt: skip
    weights = {item.name for item in onnx.load(str(bundle / entry["graphs"]["restoration"])).graph.initializer}
    assert head and all(node.input[1] in weights for node in head)  # kept float: the weight is a plain initializer


def test_layer_groups_are_the_first_two_module_levels():
    assert int8.layer_group("/net/p/m_down1/m_down1.0/res/res.0_4/Conv") == "p/m_down1"
    assert int8.layer_group("/net/p/m_tail_4/Conv") == "p/m_tail"
    assert int8.layer_group("/net/down3/double_conv/double_conv.2/Conv") == "down3/double_conv"
    assert int8.layer_group("/net/h/mlp/mlp.0/Conv") == "h/mlp"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--images", "{tmp}/nowhere"], "nowhere: not a folder of images"),
        (["--images", "{tmp}", "--samples", "3"], "holds no readable image"),
        (["--images", "{images}", "--keep-float", "p/nothing"], "--keep-float: no layer group p/nothing; groups: "),
        (["--images", "{images}", "--samples", "0"], "samples must be at least 1"),
    ],
)
def test_bad_settings_give_one_line_and_exit_2(bundle_copy, images, tmp_path, arguments, message):
    filled = [argument.format(tmp=tmp_path, images=images) for argument in arguments]
    code, _, stderr = run(int8.main, bundle_copy, *filled)
    assert code == 2 and message in stderr and stderr.strip().splitlines()[-1].startswith("error: ")
    assert load_bundle(bundle_copy).precisions == {}  # nothing was added
