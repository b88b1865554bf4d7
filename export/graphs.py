"""The graphs of a bundle: one table of what each graph computes, its input/output names and dynamic axes.

Each graph is a thin `nn.Module` over the reference models, so the ONNX computes exactly what PyTorch does.
The camera geometry and the PMBM sit inside the restoration and sequence graphs: a runtime passes numbers
(trajectory, intrinsics), never sampling grids. The trajectory graph already orders the poses in the
reference's time order; nothing downstream reorders them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models import geometry, pmbm
from models.restoration import RestorationNet
from models.trajectory import TrajectoryNet, order_poses

#: Smallest height and width the bundle accepts: the trajectory net pools five times.
MIN_SIDE = 32
IMAGE_AXES = {0: "batch", 2: "height", 3: "width"}
BATCH_AXIS = {0: "batch"}


class TrajectoryGraph(nn.Module):
    """image `(B, 3, H, W)` in [0, 1], focal_length `(B,)` px -> trajectory `(B, P, 3)` rad, time-ordered."""

    def __init__(self, net: TrajectoryNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Tensor, focal_length: Tensor) -> Tensor:
        ordered = order_poses(self.net(image, focal_length))
        # Restating the pose count as a constant lets ONNX shape inference carry it to the output.
        return ordered.reshape(image.shape[0], self.net.n_positions, 3)


class RestorationGraph(nn.Module):
    """blurry `(B, 3, H, W)`, trajectory `(B, P, 3)`, intrinsics `(B, 3, 3)`, sigma `(B,)` -> restored."""

    def __init__(self, net: RestorationNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, blurry: Tensor, trajectory: Tensor, intrinsics: Tensor, sigma: Tensor) -> Tensor:
        return self.net(blurry, trajectory, intrinsics, sigma)


class SequenceGraph(nn.Module):
    """sharp `(B, 3, H, W)`, trajectory, intrinsics -> frames `(B, P, 3, H, W)` and their mean, the reblurred."""

    def __init__(self, n_positions: int) -> None:
        super().__init__()
        self.n_positions = n_positions

    def forward(self, sharp: Tensor, trajectory: Tensor, intrinsics: Tensor) -> tuple[Tensor, Tensor]:
        height, width = sharp.shape[-2], sharp.shape[-1]
        frames = pmbm.sharp_frames(sharp, pmbm.blur_grids(trajectory, intrinsics, height, width))
        # Restating the pose count as a constant lets ONNX shape inference carry it to the output.
        frames = frames.reshape(sharp.shape[0], self.n_positions, sharp.shape[1], height, width)
        return frames, frames.mean(dim=1)


@dataclass(frozen=True)
class GraphSpec:
    """One graph of the bundle: how to build it from the nets, its I/O names and its dynamic axes."""

    role: str
    build: Callable[[TrajectoryNet, RestorationNet], nn.Module]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]

    @property
    def file(self) -> str:
        return f"{self.role}.onnx"


GRAPHS = (
    GraphSpec(
        "trajectory",
        lambda trajectory_net, _: TrajectoryGraph(trajectory_net),
        inputs=("image", "focal_length"),
        outputs=("trajectory",),
        dynamic_axes={"image": IMAGE_AXES, "focal_length": BATCH_AXIS, "trajectory": BATCH_AXIS},
    ),
    GraphSpec(
        "restoration",
        lambda _, restoration_net: RestorationGraph(restoration_net),
        inputs=("blurry", "trajectory", "intrinsics", "sigma"),
        outputs=("restored",),
        dynamic_axes={
            "blurry": IMAGE_AXES,
            "trajectory": BATCH_AXIS,
            "intrinsics": BATCH_AXIS,
            "sigma": BATCH_AXIS,
            "restored": IMAGE_AXES,
        },
    ),
    GraphSpec(
        "sequence",
        lambda trajectory_net, _: SequenceGraph(trajectory_net.n_positions),
        inputs=("sharp", "trajectory", "intrinsics"),
        outputs=("frames", "reblurred"),
        dynamic_axes={
            "sharp": IMAGE_AXES,
            "trajectory": BATCH_AXIS,
            "intrinsics": BATCH_AXIS,
            "frames": {0: "batch", 3: "height", 4: "width"},
            "reblurred": IMAGE_AXES,
        },
    ),
)


def example_inputs(
    spec: GraphSpec, batch: int, height: int, width: int, n_positions: int, seed: int = 0
) -> dict[str, Tensor]:
    """Plausible inputs for a graph: smooth random images, shake of ~0.02 rad, default intrinsics, sigma 0.01.

    Images are noise upsampled 8x, spatially correlated like a photograph. On i.i.d. pixel noise, sampled frames
    differ between backends by up to ~f * 2e-7 (float32 rounding of the sampling positions in pixels, times an
    image gradient of up to 1 per pixel).
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, height // 8 + 2, width // 8 + 2, generator=generator)
    image = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)
    values = {
        "image": image,
        "blurry": image,
        "sharp": image,
        "focal_length": torch.full((batch,), geometry.default_focal_length(height, width)),
        "trajectory": 0.02 * torch.randn(batch, n_positions, 3, generator=generator),
        "intrinsics": geometry.intrinsics(height, width, batch=batch),
        "sigma": torch.full((batch,), 0.01),
    }
    return {name: values[name] for name in spec.inputs}
