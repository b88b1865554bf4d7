"""The trajectory network: one blurry image and its focal length -> 25 camera rotations (pitch, yaw, roll).

Same layers and state-dict keys as the authors' two-branch network (DESIGN.md section 2a). Their state dicts also
hold stems for 1-, 4- and 5-channel inputs (`inc_gray`, `inc_frgb`, `inc_grid_rgb`) that RGB inference never
runs; this class leaves them out on purpose and `models.checkpoint` drops them when loading.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: State-dict prefixes of the authors' stems for other input kinds; never used for RGB input.
UNUSED_STEM_PREFIXES = ("inc_frgb.", "inc_grid_rgb.", "inc_gray.")
#: Number of 2x2 max-poolings: inputs must be at least this many times 2 pixels on each side.
MIN_INPUT_SIDE = 32
MAX_ANGLE = math.pi / 4


def _conv3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


def _conv_lrelu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(_conv3(in_channels, out_channels), nn.LeakyReLU(0.01))


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        _conv3(in_channels, out_channels),
        nn.LeakyReLU(0.01),
        _conv3(out_channels, out_channels),
        nn.LeakyReLU(0.01),
    )


class _Down(nn.Module):
    """Two convolutions; returns the features and a 2x2 max-pooled copy for the next block."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.double_conv = _double_conv(in_channels, out_channels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.double_conv(x)
        return features, F.max_pool2d(features, 2)


class _Up(nn.Module):
    """Upsample x2, two convolutions, fit to the skip's size the reference's way, fuse with the skip.

    The reference fits by padding `d//2` before and `d - d//2` after for a size difference `d`. Sizes here are
    architecture constants (a 1x1 context, skips tiled to 1, 2, 4, 8), so the only fit is `d = -1` at the first
    level: drop the first row and column. Written as a static slice, the graph holds no shape-dependent Pad.
    """

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int, drop_first: bool) -> None:
        super().__init__()
        self.double_conv = _double_conv(in_channels, out_channels)
        self.feat = _conv_lrelu(skip_channels + out_channels, out_channels)
        self.drop_first = drop_first

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        x = self.double_conv(x)
        if self.drop_first:
            x = x[..., 1:, 1:]
        return self.feat(torch.cat([skip, x], dim=1))


def _decoder_layers(width: int, outputs: int) -> dict[str, nn.Module]:
    """One output branch: four up blocks from 1x1 to 8x8, then an 8x8 convolution to `outputs` values."""
    return {
        "up1": _Up(16 * width, 8 * width, 16 * width, drop_first=True),
        "up2": _Up(8 * width, 4 * width, 8 * width, drop_first=False),
        "up3": _Up(4 * width, 4 * width, 4 * width, drop_first=False),
        "up4": _Up(4 * width, 2 * width, 2 * width, drop_first=False),
        "end": nn.Sequential(
            _conv3(2 * width, 2 * width),
            nn.LeakyReLU(0.01),
            _conv3(2 * width, 2 * width),
            nn.LeakyReLU(0.01),
            nn.Conv2d(2 * width, outputs, kernel_size=8),
        ),
    }


def _global_skip(features: Tensor, size: int) -> Tensor:
    """Spatial mean of a feature map, tiled to `size x size`: the decoder never sees the input's resolution."""
    return features.mean(dim=(2, 3), keepdim=True).expand(-1, -1, size, size)


class TrajectoryNet(nn.Module):
    """Blurry RGB `(B, 3, H, W)` in [0, 1] and focal length `(B,)` px -> trajectory `(B, n_positions, 3)` rad.

    The net subtracts 0.5 itself. Poses come in the network's order; `order_poses` applies the reference's
    time order. Any H, W of at least `MIN_INPUT_SIDE` pixels.
    """

    def __init__(self, n_positions: int = 25, nc1: int = 64) -> None:
        super().__init__()
        self.n_positions = n_positions
        self.nc1 = nc1
        c = nc1
        self.inc_rgb = _conv_lrelu(3, c)
        self.down1 = _Down(c, c)
        self.down2 = _Down(c, 2 * c)
        self.down3 = _Down(2 * c, 4 * c)
        self.down4 = _Down(4 * c, 8 * c)
        self.down5 = _Down(8 * c, 16 * c)
        self.feat = _conv_lrelu(16 * c, 16 * c)
        for branch, values in (("roll", 1), ("pitch_yaw", 2)):
            for name, layer in _decoder_layers(c, values * n_positions).items():
                self.add_module(f"{branch}_{name}", layer)

    def _decode(self, branch: str, context: Tensor, skips: list[Tensor]) -> Tensor:
        x = context
        for level, skip in enumerate(skips, start=1):
            x = getattr(self, f"{branch}_up{level}")(x, skip)
        return getattr(self, f"{branch}_end")(x)

    def forward(self, image: Tensor, focal_length: Tensor) -> Tensor:
        x = self.inc_rgb(image - 0.5)
        _, x = self.down1(x)
        f2, x = self.down2(x)
        f3, x = self.down3(x)
        f4, x = self.down4(x)
        f5, x = self.down5(x)
        context = self.feat(x).mean(dim=(2, 3), keepdim=True)
        skips = [_global_skip(f5, 1), _global_skip(f4, 2), _global_skip(f3, 4), _global_skip(f2, 8)]
        batch = image.shape[0]
        roll = self._decode("roll", context, skips).reshape(batch, self.n_positions, 1)
        pitch_yaw_px = self._decode("pitch_yaw", context, skips).reshape(batch, self.n_positions, 2)
        focal = focal_length.reshape(-1, 1, 1).to(pitch_yaw_px.dtype)
        pitch_yaw = torch.atan(pitch_yaw_px / focal)  # = atan2(p, f) for f > 0, without atan2's NaN guards
        return torch.clamp(torch.cat([pitch_yaw, roll], dim=2), -MAX_ANGLE, MAX_ANGLE)


def reference_pose_order(trajectory: Tensor) -> Tensor:
    """The reference's time order of poses `(B, P)`: start from the pose farthest from all others (summed
    distance), order every pose by decreasing distance to it. Recovers time order up to reversal."""
    differences = trajectory[:, :, None] - trajectory[:, None]
    distances = torch.sqrt((differences * differences).sum(dim=-1))  # not cdist: the dynamo exporter lacks it
    extreme = distances.sum(dim=1).argmax(dim=1)
    from_extreme = torch.gather(distances, 1, extreme[:, None, None].expand(-1, 1, distances.shape[2]))
    return torch.argsort(from_extreme[:, 0], dim=1, descending=True)


def order_poses(trajectory: Tensor) -> Tensor:
    """The trajectory `(B, P, 3)` with its poses in the reference's time order."""
    order = reference_pose_order(trajectory)
    return torch.gather(trajectory, 1, order[..., None].expand(-1, -1, trajectory.shape[2]))
