"""The refinement graph: reblur loss and its analytic gradient with respect to the trajectory, for a bundle.

    python -m export.refine BUNDLE [--opset N]

`RefineGraph` maps (blurry, latent, trajectory, intrinsics, mask) to the per-image reblur loss

    loss = sum_p m_p sum_c (PMBM(latent, trajectory) - blurry)^2 / (C * sum_p m_p)

and its gradient `(B, P, 3)` with respect to the rotation vectors, computed in closed form with forward tensor ops
(no autograd in the graph, so any backend that runs the forward graphs runs this one):

- image derivatives at the warped positions are those of bilinear interpolation itself, exactly: the x-derivative
  of the bilinear interpolant inside a cell is the forward difference `I[y, x0+1] - I[y, x0]` at `x0 = floor(x)`,
  interpolated linearly in y. So the forward-difference image `Dx` (zero-padded to the image's size) is sampled
  with GridSample at `(floor(x), y)`, floor clamped to the last cell (and `Dy` at `(x, floor(y))`). Reflection
  padding is applied to the positions (`geometry.reflect_positions`) and its slope flips the derivative, as
  autograd does. It differs from autograd only where a position falls exactly on a pixel column/row (a set of
  measure zero: the one-sided derivative is taken from the other cell).
- the Jacobian of the sampling position `dehom(K R^T K^-1 p)` with respect to the rotation vector goes through the
  derivative of the reference's Rodrigues formula (with its epsilon and its norm floor) by the product rule.
  The per-pixel chain is contracted first, so the graph reduces nine `(B, P, H, W)` maps to `(B, P, 3, 3)` and
  never materialises a per-pixel `3 x 3 x 3` Jacobian.

`export_refine` adds `refine.onnx` to an existing bundle, after the same proofs as the other graphs (full ONNX
check, TensorRT lint at the bundle's minimum TensorRT, onnxruntime-vs-PyTorch parity), and refreshes the
manifest atomically.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from export.graph_io import (
    OLDEST_TENSORRT,
    SUPPORTED_OPSETS,
    TRACE_SHAPE,
    VERIFY_SHAPE,
    ExportError,
    check_onnx,
    io_description,
    onnxruntime_parity,
    write_onnx,
)
from export.graphs import BATCH_AXIS, IMAGE_AXES
from models import geometry, pmbm
from runtime.core.bundle import BundleError, load_bundle, write_manifest

ROLE = "refine"
FILE = f"{ROLE}.onnx"
INPUTS = ("blurry", "latent", "trajectory", "intrinsics", "mask")
OUTPUTS = ("loss", "gradient")
DYNAMIC_AXES = {
    "blurry": IMAGE_AXES,
    "latent": IMAGE_AXES,
    "trajectory": BATCH_AXIS,
    "intrinsics": BATCH_AXIS,
    "mask": IMAGE_AXES,
    "loss": BATCH_AXIS,
    "gradient": BATCH_AXIS,
}
#: Parity onnxruntime vs PyTorch: max abs difference relative to the largest magnitude of the output.
RELATIVE_TOLERANCE = {"loss": 1e-5, "gradient": 1e-4}


def _skew(vectors: Tensor) -> Tensor:
    """Cross-product matrices `(..., 3, 3)` of vectors `(..., 3)`, laid out as in `models.geometry`."""
    x, y, z = vectors.unbind(dim=-1)
    zero = torch.zeros_like(x)
    return torch.stack(
        [torch.stack([zero, -z, y], dim=-1), torch.stack([z, zero, -x], dim=-1), torch.stack([-y, x, zero], dim=-1)],
        dim=-2,
    )


def rotation_derivatives(rotation_vectors: Tensor) -> tuple[Tensor, Tensor]:
    """Rodrigues' rotation `R (..., 3, 3)` and its derivatives `dR/dtheta_k (..., 3[k], 3, 3)`.

    Differentiates exactly the expression of `models.geometry.rotation_matrices`: angle `a = sqrt(max(|t|^2,
    1e-20))`, axis `u = t / (a + eps)`, `R = I + sin(a) [u]x + (1 - cos(a)) [u]x^2`.
    """
    squared = (rotation_vectors * rotation_vectors).sum(dim=-1, keepdim=True)
    angle = torch.sqrt(torch.clamp(squared, min=1e-20))
    scale = angle + geometry.RODRIGUES_EPS
    axis = rotation_vectors / scale
    # d angle / d theta_k; zero under the floor, where the clamp stops the gradient.
    d_angle = torch.where(squared > 1e-20, rotation_vectors / angle, torch.zeros_like(rotation_vectors))
    identity = torch.eye(3, dtype=rotation_vectors.dtype, device=rotation_vectors.device)
    # d axis_j / d theta_k = delta_jk / s - theta_j * (d angle / d theta_k) / s^2, laid out [k, j].
    d_axis = (
        identity / scale[..., None]
        - d_angle[..., :, None] * rotation_vectors[..., None, :] / (scale * scale)[..., None]
    )
    cross = _skew(axis)  # (..., 3, 3)
    d_cross = _skew(d_axis)  # (..., 3[k], 3, 3)
    cross_squared = cross @ cross
    sin, cos = torch.sin(angle)[..., None], torch.cos(angle)[..., None]  # (..., 1, 1)
    rotation = identity + sin * cross + (1 - cos) * cross_squared
    d_angle_k = d_angle[..., :, None, None]  # (..., 3[k], 1, 1)
    cross_k, cross_squared_k = cross[..., None, :, :], cross_squared[..., None, :, :]
    sin_k, cos_k = sin[..., None, :, :], cos[..., None, :, :]
    d_rotation = (
        cos_k * d_angle_k * cross_k
        + sin_k * d_cross
        + sin_k * d_angle_k * cross_squared_k
        + (1 - cos_k) * (d_cross @ cross_k + cross_k @ d_cross)
    )
    return rotation, d_rotation


def _cell_start(position: Tensor, size: Any) -> Tensor:
    """The first column (row) of the interpolation cell holding each in-range position: `floor`, but at most
    `size - 2`, so the last column (row) belongs to the cell before it."""
    start = torch.floor(position)
    return torch.where(start > size - 2, start - 1, start)


class RefineGraph(nn.Module):
    """blurry, latent `(B, 3, H, W)`, trajectory `(B, P, 3)`, intrinsics `(B, 3, 3)`, mask `(B, 1, H, W)` ->
    loss `(B,)` (masked mean squared reblur error) and gradient `(B, P, 3)` (d loss / d trajectory, analytic)."""

    def __init__(self, n_positions: int) -> None:
        super().__init__()
        self.n_positions = n_positions

    def forward(
        self, blurry: Tensor, latent: Tensor, trajectory: Tensor, intrinsics: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        batch, channels, height, width = latent.shape
        mapped_x, mapped_y = geometry.sampling_positions(trajectory, intrinsics, height, width)
        x_in, slope_x = geometry.reflect_positions(mapped_x, width)
        y_in, slope_y = geometry.reflect_positions(mapped_y, height)
        warped = pmbm.warp_poses(latent, geometry.normalized_grid(x_in, y_in))  # (B, C, P, H, W)
        residual = warped.mean(dim=2) - blurry
        weight_sum = mask.sum(dim=(1, 2, 3))
        count = torch.clamp(weight_sum * channels, min=1e-12)
        weighted = mask * residual
        loss = (weighted * residual).sum(dim=(1, 2, 3)) / count

        # Exact derivatives of the bilinear interpolant at the (reflected) warped positions: forward differences,
        # padded with zeros to the image's size, sampled at the cell's left column (top row), which is clamped so
        # that a position on the last column (row) takes the difference of the cell before it. Every sample is in
        # range, so these are warps like the blur's (`pmbm.warp_poses`) and run as fast.
        zero_column, zero_row = torch.zeros_like(latent[:, :, :, :1]), torch.zeros_like(latent[:, :, :1, :])
        diff_x = torch.cat([latent[:, :, :, 1:] - latent[:, :, :, :-1], zero_column], dim=3)  # (B, C, H, W)
        diff_y = torch.cat([latent[:, :, 1:, :] - latent[:, :, :-1, :], zero_row], dim=2)
        along_x = pmbm.warp_poses(diff_x, geometry.normalized_grid(_cell_start(x_in, width), y_in))
        along_y = pmbm.warp_poses(diff_y, geometry.normalized_grid(x_in, _cell_start(y_in, height)))
        # Per pose and pixel: sum_c m r dW/dx and sum_c m r dW/dy, (B, P, H, W).
        push_x = (weighted[:, :, None] * along_x).sum(dim=1) * slope_x
        push_y = (weighted[:, :, None] * along_y).sum(dim=1) * slope_y

        # Positions: x = cx + fx v0 / v2, y = cy + fy v1 / v2 with v = R^T m and the ray m = K^-1 p.
        # dx/dt = (fx dv0 - (x - cx) dv2) / v2, dy/dt = (fy dv1 - (y - cy) dv2) / v2 and dv_j = sum_l dR[l, j] m_l,
        # so the pixel sum of push . d(x, y)/dt_k is sum_{l, j} dR_k[l, j] T[l, j], T[l, j] = sum_p m_l a_j.
        rotation, d_rotation = rotation_derivatives(trajectory)
        fx, fy = intrinsics[:, 0, 0], intrinsics[:, 1, 1]
        cx, cy = intrinsics[:, 0, 2], intrinsics[:, 1, 2]
        x, y = geometry.pixel_coordinates(height, width, latent)  # (1, 1, 1, W), (1, 1, H, 1)
        ray_x = (x - cx[:, None, None, None]) / fx[:, None, None, None]  # (B, 1, 1, W)
        ray_y = (y - cy[:, None, None, None]) / fy[:, None, None, None]  # (B, 1, H, 1)
        depth = rotation[:, :, 0, 2, None, None] * ray_x + rotation[:, :, 1, 2, None, None] * ray_y
        inverse_depth = 1 / (depth + rotation[:, :, 2, 2, None, None])  # (B, P, H, W)
        coefficients = (
            torch.stack(
                [
                    push_x * fx[:, None, None, None],
                    push_y * fy[:, None, None, None],
                    -(push_x * (mapped_x - cx[:, None, None, None]) + push_y * (mapped_y - cy[:, None, None, None])),
                ],
                dim=2,
            )
            * inverse_depth[:, :, None]
        )  # (B, P, 3[j], H, W)
        rays = torch.stack(
            [ray_x.expand(batch, 1, height, width), ray_y.expand(batch, 1, height, width), torch.ones_like(mask)],
            dim=2,
        )  # (B, 1, 3[l], H, W)
        pixels = height * width
        moments = coefficients.reshape(batch, -1, 3, pixels) @ rays.reshape(batch, 1, 3, pixels).transpose(-1, -2)
        # moments[b, p, j, l] = T[l, j]; contract with dR_k[l, j].
        gradient = (d_rotation * moments.transpose(-1, -2)[:, :, None]).sum(dim=(-1, -2))
        gradient = gradient * (2 / self.n_positions) / count[:, None, None]
        # Restating the pose count as a constant lets ONNX shape inference carry it to the output.
        return loss, gradient.reshape(batch, self.n_positions, 3)


def reference_loss(blurry: Tensor, latent: Tensor, trajectory: Tensor, intrinsics: Tensor, mask: Tensor) -> Tensor:
    """The same loss through `models.pmbm` (for autograd checks): masked mean squared reblur error `(B,)`."""
    height, width = latent.shape[-2:]
    reblurred = pmbm.blur(latent, pmbm.blur_grids(trajectory, intrinsics, height, width))
    residual = reblurred - blurry
    count = torch.clamp(mask.sum(dim=(1, 2, 3)) * latent.shape[1], min=1e-12)
    return (mask * residual * residual).sum(dim=(1, 2, 3)) / count


def example_refine_inputs(batch: int, height: int, width: int, n_positions: int, seed: int = 0) -> dict[str, Tensor]:
    """Plausible refinement inputs: a smooth latent, its blur under one shake, a nearby trajectory, a mask."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, height // 8 + 2, width // 8 + 2, generator=generator)
    latent = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True).clamp(0, 1)
    camera = geometry.intrinsics(height, width, batch=batch)
    truth = 0.02 * torch.randn(batch, n_positions, 3, generator=generator)
    with torch.no_grad():
        blurry = pmbm.blur(latent, pmbm.blur_grids(truth, camera, height, width))
    mask = (torch.rand(batch, 1, height, width, generator=generator) > 0.1).float()
    trajectory = truth + 0.01 * torch.randn(batch, n_positions, 3, generator=generator)
    return {"blurry": blurry, "latent": latent, "trajectory": trajectory, "intrinsics": camera, "mask": mask}


def export_refine(
    bundle_dir: str | Path, opset: int | None = None, log: Callable[[str], object] = print
) -> dict[str, Any]:
    """Add `refine.onnx` to the bundle at `bundle_dir` (replacing an earlier one); returns the new manifest.

    `opset` defaults to the bundle's. Raises `ExportError` on a failed check (the bundle is then unchanged) and
    `BundleError` when `bundle_dir` is no valid bundle.
    """
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    opset = int(manifest.get("opset", 17)) if opset is None else opset
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"opset {opset} not supported: choose one of {SUPPORTED_OPSETS}")
    trt_version = str(manifest.get("tensorrt_min_version", OLDEST_TENSORRT[opset][0]))
    module = RefineGraph(bundle.n_positions).eval()
    staging = Path(tempfile.mkdtemp(dir=bundle.path, prefix=f".{FILE}.partial-"))
    try:
        path = staging / FILE
        write_onnx(module, example_refine_inputs(*TRACE_SHAPE, bundle.n_positions), OUTPUTS, DYNAMIC_AXES, path, opset)
        model = check_onnx(path, FILE, trt_version)
        errors = parity(module, path, bundle.n_positions)
        path.chmod(0o644)
        os.replace(path, bundle.path / FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    graphs = {**manifest.get("graphs", {}), ROLE: {"file": FILE, **io_description(model)}}
    recorded = {**manifest.get("parity", {})}
    recorded["refine_relative_error"] = errors
    manifest = write_manifest(bundle.path, {**manifest, "graphs": graphs, "parity": recorded})
    log(f"{ROLE}: exported, checked, linted (TensorRT {trt_version}); parity " + _format(errors))
    return manifest


def parity(module: nn.Module, path: Path, n_positions: int) -> dict[str, float]:
    """Max abs difference onnxruntime CPU vs PyTorch per output, relative to the output's largest magnitude, at
    a shape unlike the traced one; raises `ExportError` above `RELATIVE_TOLERANCE`."""
    inputs = example_refine_inputs(*VERIFY_SHAPE, n_positions, seed=1)
    return onnxruntime_parity(module, inputs, path, OUTPUTS, RELATIVE_TOLERANCE, relative=True)


def _format(errors: dict[str, float]) -> str:
    return ", ".join(f"{name} {error:.1e} (relative)" for name, error in errors.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.refine", description="Add refine.onnx to a bundle.")
    parser.add_argument("bundle", type=Path, help="bundle directory (written by python -m export.onnx)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the bundle's)")
    args = parser.parse_args(argv)
    try:
        export_refine(args.bundle, args.opset)
    except (BundleError, ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
