"""The model-based restoration network (NIMBUSR): unrolled ADMM over the PMBM with a ResUNet prior.

Same layers and state-dict keys as the authors' network (DESIGN.md sections 2 and 2a). The blur operator comes
from `models.pmbm` as grid sampling; its grids are computed once per image and reused by all 2n+2 blur calls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.pmbm import BlurGrids, adjoint_blur, blur, blur_grids

#: The prior's encoder halves the resolution three times; it pads its input to a multiple of this.
PRIOR_MULTIPLE = 8


def _conv3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)


class _ResBlock(nn.Module):
    """`x + conv(relu(conv(x)))`, without biases."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.res = nn.Sequential(_conv3(channels, channels), nn.ReLU(), _conv3(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res(x)


def _res_blocks(channels: int, count: int) -> list[nn.Module]:
    return [_ResBlock(channels) for _ in range(count)]


def _sequential(modules: list[nn.Module]) -> nn.Module:
    """The reference's helper returns a lone module unwrapped, which changes its state-dict keys."""
    return modules[0] if len(modules) == 1 else nn.Sequential(*modules)


class ResUNet(nn.Module):
    """The denoising prior: 4 channels (image and noise level) -> 3, any H, W (edge-padded to a multiple of 8)."""

    def __init__(self, nc: tuple[int, ...] = (64, 128, 256, 512), nb: int = 2, in_nc: int = 4, out_nc: int = 3):
        super().__init__()
        c1, c2, c3, c4 = nc
        down = nn.Conv2d
        up = nn.ConvTranspose2d
        self.m_head = _conv3(in_nc, c1)
        self.m_down1 = nn.Sequential(*_res_blocks(c1, nb), down(c1, c2, 2, stride=2, bias=False))
        self.m_down2 = nn.Sequential(*_res_blocks(c2, nb), down(c2, c3, 2, stride=2, bias=False))
        self.m_down3 = nn.Sequential(*_res_blocks(c3, nb), down(c3, c4, 2, stride=2, bias=False))
        self.m_body = _sequential(_res_blocks(c4, nb))
        self.m_up3 = nn.Sequential(up(c4, c3, 2, stride=2, bias=False), *_res_blocks(c3, nb))
        self.m_up2 = nn.Sequential(up(c3, c2, 2, stride=2, bias=False), *_res_blocks(c2, nb))
        self.m_up1 = nn.Sequential(up(c2, c1, 2, stride=2, bias=False), *_res_blocks(c1, nb))
        self.m_tail = _conv3(c1, out_nc)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2], x.shape[-1]
        pad_bottom = (PRIOR_MULTIPLE - height % PRIOR_MULTIPLE) % PRIOR_MULTIPLE
        pad_right = (PRIOR_MULTIPLE - width % PRIOR_MULTIPLE) % PRIOR_MULTIPLE
        x = F.pad(x, [0, pad_right, 0, pad_bottom], mode="replicate")
        x1 = self.m_head(x)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        u = self.m_up3(self.m_body(x4) + x4)
        u = self.m_up2(u + x3)
        u = self.m_up1(u + x2)
        return self.m_tail(u + x1)[..., :height, :width]


class HyPaNet(nn.Module):
    """Noise level -> the 3(n+1) positive ADMM weights (alpha, beta, gamma per stage)."""

    def __init__(self, n_iter: int = 8, h_nc: int = 64, in_nc: int = 2) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(in_nc, h_nc, 1),
            nn.ReLU(),
            nn.Conv2d(h_nc, h_nc, 1),
            nn.ReLU(),
            nn.Conv2d(h_nc, 3 * (n_iter + 1), 1),
            nn.Softplus(),
        )

    def forward(self, sigma: Tensor) -> Tensor:
        """`sigma (B,)` -> weights `(B, 3(n+1), 1, 1)`; the second input is the scale factor, always 1."""
        sigma = sigma.reshape(-1, 1, 1, 1)
        return self.mlp(torch.cat([sigma, torch.ones_like(sigma)], dim=1)) + 1e-6


class RestorationNet(nn.Module):
    """Blurry RGB `(B, 3, H, W)` in [0, 1], trajectory `(B, P, 3)` rad, intrinsics `(B, 3, 3)`, noise sigma `(B,)`
    -> restored RGB. `restore` takes precomputed `BlurGrids` instead of trajectory and intrinsics."""

    def __init__(self, n_iter: int = 8, h_nc: int = 64, nc: tuple[int, ...] = (64, 128, 256, 512), nb: int = 2) -> None:
        super().__init__()
        self.n_iter = n_iter
        self.h_nc = h_nc
        self.nc = tuple(nc)
        self.nb = nb
        self.p = ResUNet(self.nc, nb)
        self.h = HyPaNet(n_iter, h_nc)

    def forward(self, blurry: Tensor, trajectory: Tensor, camera: Tensor, sigma: Tensor) -> Tensor:
        grids = blur_grids(trajectory, camera, blurry.shape[-2], blurry.shape[-1])
        return self.restore(blurry, grids, sigma)

    def restore(self, blurry: Tensor, grids: BlurGrids, sigma: Tensor) -> Tensor:
        """Unrolled ADMM: a data step through the blur operator, then the prior, n+1 times."""
        n = self.n_iter
        weights = self.h(sigma)
        alpha, beta, gamma = weights[:, : n + 1], weights[:, n + 1 : 2 * (n + 1)], weights[:, 2 * (n + 1) :]
        x = blurry
        z = blurry
        reblurred = blur(x, grids)
        dual = torch.zeros_like(blurry)
        for k in range(n + 1):
            x = x - beta[:, k : k + 1] * adjoint_blur(reblurred - z + dual, grids)
            noise_map = gamma[:, k : k + 1].expand(-1, -1, x.shape[-2], x.shape[-1])
            x = self.p(torch.cat([x, noise_map], dim=1))
            if k < n:
                reblurred = blur(x, grids)
                a = alpha[:, k : k + 1]
                z = (blurry + a * (reblurred + dual)) / (1 + a)
                dual = dual + reblurred - z
        return x
