import json
import shutil

import numpy as np
import onnxruntime
import pytest
import torch

from export import refine
from export.lint import lint_path
from export.onnx import ExportError
from models import geometry, pmbm
from runtime.core.bundle import load_bundle

P = 25


def photo(batch: int, height: int, width: int) -> torch.Tensor:
    """Crops of scikit-image's astronaut photo (real edges and texture), `(B, 3, H, W)` in [0, 1]."""
    data = pytest.importorskip("skimage.data")
    image = torch.from_numpy(data.astronaut().astype(np.float32) / 255).permute(2, 0, 1)
    return torch.stack([image[:, 100 + 60 * b : 100 + 60 * b + height, 150 : 150 + width] for b in range(batch)])


def smooth(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    return refine.example_refine_inputs(batch, height, width, P, seed=seed)["latent"]


def refine_case(latent: torch.Tensor, seed: int, scale: float) -> dict[str, torch.Tensor]:
    """A blurry image under a random shake of `scale` rad, and a trajectory near it."""
    generator = torch.Generator().manual_seed(seed)
    batch, _, height, width = latent.shape
    camera = geometry.intrinsics(height, width, batch=batch)
    truth = scale * torch.randn(batch, P, 3, generator=generator)
    with torch.no_grad():
        blurry = pmbm.blur(latent, pmbm.blur_grids(truth, camera, height, width))
    blurry = blurry + 0.01 * torch.randn(blurry.shape, generator=generator)
    trajectory = truth + scale * torch.randn(batch, P, 3, generator=generator)
    mask = (torch.rand(batch, 1, height, width, generator=generator) > 0.2).float()
    return {"blurry": blurry, "latent": latent, "trajectory": trajectory, "intrinsics": camera, "mask": mask}


def autograd_gradient(case: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    trajectory = case["trajectory"].clone().requires_grad_(True)
    loss = refine.reference_loss(case["blurry"], case["latent"], trajectory, case["intrinsics"], case["mask"])
    loss.sum().backward()
    assert trajectory.grad is not None
    return loss.detach(), trajectory.grad


@pytest.mark.parametrize("scale", [0.01, 0.03])
@pytest.mark.parametrize("content", ["photo", "smooth"])
def test_gradient_matches_autograd(content, scale):
    """Measured: relative error (L2 norm and max abs, over all 2x25x3 entries) ~1e-6, float32 rounding only."""
    latent = photo(2, 72, 96) if content == "photo" else smooth(2, 72, 96, seed=5)
    case = refine_case(latent, seed=int(scale * 1000), scale=scale)
    with torch.no_grad():
        loss, gradient = refine.RefineGraph(P)(*case.values())
    want_loss, want = autograd_gradient(case)
    assert torch.allclose(loss, want_loss, rtol=1e-5, atol=0)
    assert float((gradient - want).norm() / want.norm()) <= 1e-3
    assert float((gradient - want).abs().max() / want.abs().max()) <= 1e-3


def test_rotation_derivatives_match_autograd_including_near_zero():
    theta = torch.tensor([[0.02, -0.01, 0.005], [1e-12, 0.0, 0.0], [0.0, 0.0, 0.0], [0.3, 0.2, -0.4]])
    rotation, derivatives = refine.rotation_derivatives(theta)
    assert torch.allclose(rotation, geometry.rotation_matrices(theta), atol=1e-7)
    jacobian = torch.autograd.functional.jacobian(geometry.rotation_matrices, theta)  # (N, 3, 3, N, 3)
    for n in range(theta.shape[0]):
        assert torch.allclose(derivatives[n], jacobian[n, :, :, n].permute(2, 0, 1), atol=1e-5), n


def test_masked_pixels_do_not_count():
    case = refine_case(smooth(1, 48, 64, seed=2), seed=3, scale=0.02)
    spoiled = {**case, "blurry": case["blurry"] + 5 * (1 - case["mask"])}
    with torch.no_grad():
        clean, spoiled_out = refine.RefineGraph(P)(*case.values()), refine.RefineGraph(P)(*spoiled.values())
    for a, b in zip(clean, spoiled_out, strict=True):
        assert torch.allclose(a, b)


@pytest.fixture(scope="module")
def refined_bundle(small_bundle, tmp_path_factory):
    bundle = tmp_path_factory.mktemp("refine") / "small"
    shutil.copytree(small_bundle, bundle)
    messages: list[str] = []
    refine.export_refine(bundle, log=messages.append)
    assert len(messages) == 1 and "parity" in messages[0]
    return bundle


def test_export_adds_the_graph_to_the_manifest(refined_bundle):
    loaded = load_bundle(refined_bundle)
    entry = loaded.manifest["graphs"]["refine"]
    assert entry["file"] == "refine.onnx" and "refine.onnx" in loaded.manifest["files"]
    assert [value["name"] for value in entry["inputs"]] == list(refine.INPUTS)
    assert [value["name"] for value in entry["outputs"]] == list(refine.OUTPUTS)
    assert entry["outputs"][1]["shape"] == ["batch", P, 3]
    errors = loaded.manifest["parity"]["refine_relative_error"]
    assert errors["loss"] <= 1e-5 and errors["gradient"] <= 1e-4
    assert not [f for f in refined_bundle.iterdir() if f.name.startswith(".")]  # no temporary left


def test_the_cell_of_a_position_on_the_last_pixel_is_the_one_before_it():
    positions = torch.tensor([0.0, 0.5, 5.0, 5.99, 6.0, 6.0 - 1e-6])
    assert refine._cell_start(positions, 7).tolist() == [0.0, 0.0, 5.0, 5.0, 5.0, 5.0]


def test_the_refine_graph_passes_the_lint(refined_bundle):
    assert lint_path(refined_bundle / "refine.onnx", "8.5") == []


@pytest.mark.parametrize("batch, height, width", [(1, 64, 64), (2, 75, 53)])
def test_onnxruntime_matches_pytorch(refined_bundle, batch, height, width):
    case = refine_case(photo(batch, height, width), seed=height, scale=0.02)
    session = onnxruntime.InferenceSession(str(refined_bundle / "refine.onnx"), providers=["CPUExecutionProvider"])
    loss, gradient = session.run(None, {name: value.numpy() for name, value in case.items()})
    with torch.no_grad():
        want_loss, want = refine.RefineGraph(P)(*case.values())
    assert loss.shape == (batch,) and gradient.shape == (batch, P, 3)
    assert np.abs(loss - want_loss.numpy()).max() <= 1e-5 * float(want_loss.abs().max())
    assert np.abs(gradient - want.numpy()).max() <= 1e-4 * float(want.abs().max())


def test_a_failed_export_leaves_the_bundle_unchanged(small_bundle, bundle_copy):
    before = (bundle_copy / "manifest.json").read_text()
    with pytest.raises(ExportError, match="opset 21"):
        refine.export_refine(bundle_copy, opset=21, log=lambda _: None)
    assert (bundle_copy / "manifest.json").read_text() == before
    assert sorted(f.name for f in bundle_copy.iterdir()) == sorted(f.name for f in small_bundle.iterdir())


def test_cli(bundle_copy, tmp_path, capsys):
    assert refine.main([str(tmp_path / "nowhere")]) == 2
    assert "not a bundle directory" in capsys.readouterr().err
    assert refine.main([str(bundle_copy)]) == 0
    assert "refine" in json.loads((bundle_copy / "manifest.json").read_text())["graphs"]
