"""Helpers for the model tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def arc_trajectory(poses: int = 25, extent: float = 0.1) -> torch.Tensor:
    """A smooth shake: yaw sweeps, pitch bends, a little roll; `(1, P, 3)` rad."""
    import torch

    t = torch.linspace(-1, 1, poses)
    return torch.stack([0.5 * extent * torch.sin(2 * t), extent * t, 0.3 * extent * t**2], dim=-1)[None]
