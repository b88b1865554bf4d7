"""The CPU provider's DeformConv form of the blur warps gives the graphs' numbers, faster where it counts."""

import shutil

import numpy as np
import onnx
import onnxruntime
import pytest

from export.refine import example_refine_inputs, export_refine
from runtime.core.backends.ort_warps import DEFORM_CONV_OPSET, averaged_warp_model, deform_warps
from runtime.core.bundle import load_bundle
from tests.runtime.conftest import smooth_rgb

H, W = 52, 68  # not multiples of 8


def session(model: onnx.ModelProto) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def op_count(model: onnx.ModelProto, op_type: str) -> int:
    return sum(node.op_type == op_type for node in model.graph.node)


@pytest.fixture(scope="module")
def bundle(small_bundle, tmp_path_factory):
    path = tmp_path_factory.mktemp("warps") / "small"
    shutil.copytree(small_bundle, path)
    export_refine(path, log=lambda _: None)
    return load_bundle(path)


def restoration_inputs(bundle, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    camera = np.array([[[W, 0, W / 2], [0, W, H / 2], [0, 0, 1]]], np.float32)
    return {
        "blurry": np.ascontiguousarray(smooth_rgb(H, W, seed=seed).transpose(2, 0, 1)[None]),
        "trajectory": (0.02 * rng.standard_normal((1, bundle.n_positions, 3))).astype(np.float32),
        "intrinsics": camera,
        "sigma": np.float32([0.01]),
    }


def test_every_blur_of_the_restoration_becomes_one_deform_conv_with_the_same_numbers(bundle):
    original = onnx.load(bundle.graph_path("restoration"))
    warps = op_count(original, "GridSample")
    n_iter = bundle.manifest["architecture"]["restoration"]["n_iter"]
    assert warps == 2 * n_iter + 2  # B(y), then B^T and B per iteration, and the last B^T
    rewritten, count = deform_warps(onnx.load(bundle.graph_path("restoration")), bundle.n_positions)
    assert count == warps and op_count(rewritten, "GridSample") == 0 and op_count(rewritten, "DeformConv") == warps
    assert {entry.version for entry in rewritten.opset_import if entry.domain in ("", "ai.onnx")} == {DEFORM_CONV_OPSET}
    onnx.checker.check_model(rewritten, full_check=True)
    for seed in (0, 1):  # images in [0, 1]; float rounding only (measured ~1e-6)
        inputs = restoration_inputs(bundle, seed)
        (expected,), (got,) = session(original).run(None, inputs), session(rewritten).run(None, inputs)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_every_warp_of_the_refine_graph_is_rewritten_with_the_same_numbers(bundle):
    """The loss's averaged warp and the two derivative samples per pose."""
    original = onnx.load(bundle.graph_path("refine"))
    assert op_count(original, "GridSample") == 3
    rewritten, count = deform_warps(onnx.load(bundle.graph_path("refine")), bundle.n_positions)
    assert count == 3 and op_count(rewritten, "GridSample") == 0 and op_count(rewritten, "DeformConv") == 3
    inputs = {name: value.numpy() for name, value in example_refine_inputs(1, H, W, bundle.n_positions).items()}
    expected, got = session(original).run(None, inputs), session(rewritten).run(None, inputs)
    for before, after in zip(expected, got, strict=True):
        np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4 * np.abs(before).max())


def test_the_sequence_frames_are_rewritten_with_the_same_numbers(bundle):
    original = onnx.load(bundle.graph_path("sequence"))
    rewritten, count = deform_warps(onnx.load(bundle.graph_path("sequence")), bundle.n_positions)
    assert count == 1 and op_count(rewritten, "GridSample") == 0
    inputs = restoration_inputs(bundle, seed=4)
    inputs = {"sharp": inputs["blurry"], "trajectory": inputs["trajectory"], "intrinsics": inputs["intrinsics"]}
    for before, after in zip(session(original).run(None, inputs), session(rewritten).run(None, inputs), strict=True):
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)


def test_graphs_without_warps_are_left_alone(bundle):
    trajectory = onnx.load(bundle.graph_path("trajectory"))
    assert deform_warps(trajectory, bundle.n_positions) == (trajectory, 0)


def test_a_warp_known_not_to_move_rgb_keeps_its_grid_sample(bundle):
    original = onnx.load(bundle.graph_path("restoration"))
    _, count = deform_warps(original, bundle.n_positions, channels=4)
    # Shape inference knows the channel count (3) of some warped images: those stay; the rest are assumed 4.
    assert 0 < count < op_count(original, "GridSample")


def test_the_warp_alone_is_the_mean_of_the_torch_warps_in_both_forms():
    """The benchmark's single blur-operator graph: PyTorch's `pmbm.warp_poses` then the mean, and its DeformConv
    rewrite gives the same numbers."""
    torch = pytest.importorskip("torch")
    from models import pmbm

    rng = np.random.default_rng(3)
    image = np.ascontiguousarray(smooth_rgb(H, W, seed=3).transpose(2, 0, 1)[None])
    grid = rng.uniform(-1, 1, (1, 25 * H, W, 2)).astype(np.float32)
    expected = pmbm.warp_poses(torch.from_numpy(image), torch.from_numpy(grid)).mean(dim=2).numpy()
    model = averaged_warp_model(25)
    onnx.checker.check_model(model, full_check=True)
    rewritten, count = deform_warps(averaged_warp_model(25), 25)
    assert count == 1 and op_count(rewritten, "GridSample") == 0
    for form in (model, rewritten):
        (blurred,) = session(form).run(None, {"image": image, "grid": grid})
        np.testing.assert_allclose(blurred, expected, atol=1e-6)


def grid_gathers(model: onnx.ModelProto) -> int:
    """Gathers along a grid's last axis (the offsets reading x and y out of an interleaved grid)."""
    return sum(
        node.op_type == "Gather" and any(a.name == "axis" and a.i == 3 for a in node.attribute)
        for node in model.graph.node
    )


def test_the_offsets_read_the_planes_the_graph_stacked_its_grid_from(bundle):
    """The exported grids are stacks of x and y planes: the offsets take the planes (no strided Gather); a grid
    given as an input is read with one Gather per axis."""
    for role in ("restoration", "sequence", "refine"):
        rewritten, count = deform_warps(onnx.load(bundle.graph_path(role)), bundle.n_positions)
        assert count > 0 and grid_gathers(rewritten) == 0, role
    alone, _ = deform_warps(averaged_warp_model(25), 25)
    assert grid_gathers(alone) == 2
