"""Train the compact nets on synthetic camera shake, on the CPU, resumably.

    python -m models.train trajectory  --out training/trajectory  [--steps N] [--batch B] [--crop C] [--seed S]
    python -m models.train restoration --out training/restoration [...]
    python -m models.train finetune    --out training/finetune --trajectory-net training/trajectory/trajectory.pt \
                                       --init training/restoration/restoration.pt [...]
    python -m models.train joint       --out training/joint --init training/trajectory/trajectory.pt \
                                       --restoration-net training/finetune/restoration.pt [...]
    add --resume to continue a run from OUT/train_state.pth (weights, optimiser, step, RNG)

Modes: `trajectory` trains `TrajectoryNet(nc1=16)` on the order-invariant (matched) pose error in pixels, plus
optionally the path-order error (so that the runtime's pose ordering gives a path, not a zigzag) and a small
reblur term; `restoration` trains `RestorationNet(nc=(16,32,64,128), nb=2, n_iter=4, h_nc=32)` with L1
against the sharp image given the TRUE trajectory; `finetune` trains the restoration net on a mix of true,
predicted (by a trained trajectory net) and perturbed trajectories, so that it tolerates trajectory error;
`joint` trains the trajectory net through a fixed trained restoration net: its loss adds `task_weight` x the L1
of the image restored with the estimate to the trajectory loss, so that the estimates are the ones this
restoration does best with.

Batch `k` of a run is `models.synthetic.make_batch(seed, k, ...)` and a step's random choices (trajectory mix,
noise level told to the restoration) come from a generator seeded by `(seed, k)`, so a resumed run computes
exactly what an uninterrupted one would. Writes
`OUT/train_state.pth` (for --resume) and `OUT/trajectory.pt` or `OUT/restoration.pt` (the net, loadable by
`models.checkpoint`), both atomically, every `--save-every` steps and at the end.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from models.checkpoint import atomic_torch_save, load_restoration_net, load_trajectory_net, save_checkpoint
from models.losses import matched_error_px, ordered_error_px, psnr, reblur_l1
from models.restoration import RestorationNet
from models.synthetic import HELD_OUT_IMAGES, Batch, PairConfig, make_batch
from models.trajectory import TrajectoryNet, order_poses

MODES = ("trajectory", "restoration", "finetune", "joint")
COMPACT_TRAJECTORY: dict[str, Any] = {"n_positions": 25, "nc1": 16}
COMPACT_RESTORATION: dict[str, Any] = {"n_iter": 4, "h_nc": 32, "nc": (16, 32, 64, 128), "nb": 2}
#: The noise level the runtime passes by default (the bundle's `default_sigma`).
RUNTIME_SIGMA = 0.01
#: Standard deviation of 8-bit quantisation noise: the least noise any stored image has.
QUANTIZATION_SIGMA = 1 / 255 / math.sqrt(12)
STATE_FILE = "train_state.pth"
#: Seed of the fixed validation batch (held-out photos only).
VALIDATION_SEED = 900_001


@dataclass
class TrainConfig:
    """One run's settings; stored in the state file and checked on --resume."""

    mode: str
    out: str
    steps: int = 5000
    batch: int = 8
    crop: int = 128
    seed: int = 0
    lr: float = 1e-3
    lr_final: float = 0.02  # final learning rate as a fraction of `lr` (cosine decay after warm-up)
    warmup: int = 100
    clip: float = 1.0  # gradient-norm clipping
    reblur_weight: float = 10.0  # trajectory modes: weight of the reblur L1 next to the pixel error
    order_weight: float = 0.0  # trajectory modes: weight of the path-order error next to the matched error
    task_weight: float = 100.0  # joint: weight of the restored image's L1 next to the pixel error
    mix: tuple[float, float, float] = (0.3, 0.4, 0.3)  # finetune: shares of true, predicted, perturbed
    sigma_default_share: float = 0.5  # restoration modes: share of samples given RUNTIME_SIGMA, not the true one
    save_every: int = 200
    log_every: int = 10
    validation_batch: int = 16
    threads: int = 2
    init: str | None = None  # start from these net weights
    trajectory_net: str | None = None  # finetune: the trained trajectory net
    restoration_net: str | None = None  # joint: the trained restoration net, kept fixed
    architecture: dict[str, Any] = field(default_factory=dict)  # overrides of the compact architecture (tests)

    @property
    def kind(self) -> str:
        return "trajectory" if self.mode in ("trajectory", "joint") else "restoration"


# --- pure pieces ------------------------------------------------------------------------------------------------


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay from `lr` to `lr * lr_final` at the last step."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    return config.lr * (config.lr_final + (1 - config.lr_final) * 0.5 * (1 + math.cos(math.pi * progress)))


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random source of one step: a function of (seed, step) only, so resuming changes nothing."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step + 1)


def sigma_for_net(sigma: Tensor, default_share: float, generator: torch.Generator) -> Tensor:
    """The noise level the restoration net is told: the true one (floored at quantisation noise) or, for a share
    of the samples, the runtime's fixed default, so the net works when the user does not know the noise."""
    true = torch.sqrt(sigma**2 + QUANTIZATION_SIGMA**2)
    use_default = torch.rand(sigma.shape, generator=generator) < default_share
    return torch.where(use_default, torch.full_like(true, RUNTIME_SIGMA), true)


def perturb_trajectory(trajectory: Tensor, generator: torch.Generator) -> Tensor:
    """A plausible wrong estimate: the true trajectory scaled by 0.6..1.4, plus a smooth random error of up to
    40% of its spread, mean-centred like the truth."""
    batch = trajectory.shape[0]
    scale = 0.6 + 0.8 * torch.rand(batch, 1, 1, generator=generator)
    spread = trajectory.std(dim=1, keepdim=True).norm(dim=2, keepdim=True)
    walk = torch.randn(trajectory.shape, generator=generator).cumsum(dim=1)
    walk = walk - walk.mean(dim=1, keepdim=True)
    walk = walk / walk.std(dim=1, keepdim=True).norm(dim=2, keepdim=True).clamp(min=1e-8)
    amount = 0.4 * torch.rand(batch, 1, 1, generator=generator)
    perturbed = scale * trajectory + amount * spread * walk
    return perturbed - perturbed.mean(dim=1, keepdim=True)


def mix_trajectories(
    true: Tensor, predicted: Tensor, shares: tuple[float, float, float], generator: torch.Generator
) -> Tensor:
    """Per sample, the true, the predicted or a perturbed true trajectory, with the given shares."""
    draw = torch.rand(true.shape[0], 1, 1, generator=generator)
    perturbed = perturb_trajectory(true, generator)
    return torch.where(draw < shares[0], true, torch.where(draw < shares[0] + shares[1], predicted, perturbed))


def trajectory_loss(
    net: TrajectoryNet, batch: Batch, reblur_weight: float, order_weight: float = 0.0
) -> tuple[Tensor, dict[str, float]]:
    """Order-invariant (matched) pose error (px) + `order_weight` x path-order error (px) + `reblur_weight` x
    reblur L1."""
    return _trajectory_terms(net(batch.blurry, batch.intrinsics[:, 0, 0]), batch, reblur_weight, order_weight)


def _trajectory_terms(
    estimate: Tensor, batch: Batch, reblur_weight: float, order_weight: float
) -> tuple[Tensor, dict[str, float]]:
    height, width = batch.blurry.shape[-2:]
    pixels = matched_error_px(estimate, batch.trajectory, batch.intrinsics, height, width).mean()
    ordered = ordered_error_px(estimate, batch.trajectory, batch.intrinsics, height, width).mean()
    reblur = reblur_l1(batch.sharp, batch.blurry, estimate, batch.intrinsics).mean()
    loss = pixels + order_weight * ordered + reblur_weight * reblur
    return loss, {"px": pixels.item(), "ordered": ordered.item(), "reblur": reblur.item()}


def joint_loss(
    net: TrajectoryNet,
    restoration: RestorationNet,
    batch: Batch,
    sigma: Tensor,
    config: TrainConfig,
) -> tuple[Tensor, dict[str, float]]:
    """The trajectory loss + `task_weight` x L1 between the sharp image and the image `restoration` makes with
    the estimate (the gradient flows through the restoration into the trajectory net, not into `restoration`)."""
    estimate = net(batch.blurry, batch.intrinsics[:, 0, 0])
    trajectory, parts = _trajectory_terms(estimate, batch, config.reblur_weight, config.order_weight)
    restored = restoration(batch.blurry, estimate, batch.intrinsics, sigma)
    task = (restored - batch.sharp).abs().mean()
    parts["psnr"] = psnr(restored.detach(), batch.sharp).mean().item()
    return trajectory + config.task_weight * task, parts


def restoration_loss(
    net: RestorationNet, batch: Batch, trajectory: Tensor, sigma: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """L1 between the restored and the sharp image."""
    restored = net(batch.blurry, trajectory, batch.intrinsics, sigma)
    loss = (restored - batch.sharp).abs().mean()
    return loss, {"psnr": psnr(restored.detach(), batch.sharp).mean().item()}


# --- the run ----------------------------------------------------------------------------------------------------


class Trainer:
    """Holds the net, optimiser and data stream of one run; `run` trains to `config.steps`."""

    def __init__(self, config: TrainConfig, log: Callable[[str], None] = print) -> None:
        if config.mode not in MODES:
            raise ValueError(f"unknown mode {config.mode!r}: choose one of {MODES}")
        self.config = config
        self.log = log
        self.out = Path(config.out)
        self.pairs = PairConfig(crop=config.crop)
        self.net = self._build_net()
        self.trajectory_net = self._helper_trajectory_net()
        self.restoration_net = self._helper_restoration_net()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.step = 0

    def _build_net(self) -> nn.Module:
        config = self.config
        if config.init:
            net: nn.Module = (
                load_trajectory_net(config.init) if config.kind == "trajectory" else load_restoration_net(config.init)
            )
        elif config.kind == "trajectory":
            torch.manual_seed(config.seed)
            net = TrajectoryNet(**{**COMPACT_TRAJECTORY, **config.architecture})
        else:
            torch.manual_seed(config.seed)
            net = RestorationNet(**{**COMPACT_RESTORATION, **config.architecture})
        return net.train()

    def _helper_trajectory_net(self) -> TrajectoryNet | None:
        if self.config.mode != "finetune":
            return None
        if not self.config.trajectory_net:
            raise ValueError("finetune needs --trajectory-net CKPT (a trained trajectory net)")
        return _frozen(load_trajectory_net(self.config.trajectory_net))

    def _helper_restoration_net(self) -> RestorationNet | None:
        if self.config.mode != "joint":
            return None
        if not self.config.restoration_net:
            raise ValueError("joint needs --restoration-net CKPT (a trained restoration net)")
        return _frozen(load_restoration_net(self.config.restoration_net))

    # state files

    @property
    def state_path(self) -> Path:
        return self.out / STATE_FILE

    @property
    def net_path(self) -> Path:
        return self.out / f"{self.config.kind}.pt"

    def save(self) -> None:
        """The resumable state and the net checkpoint, each written atomically."""
        self.out.mkdir(parents=True, exist_ok=True)
        state = {
            "config": asdict(self.config),
            "step": self.step,
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        atomic_torch_save(state, self.state_path)
        save_checkpoint(self.net, self.net_path)

    def resume(self) -> None:
        """Load weights, optimiser, step and RNG from `OUT/train_state.pth`."""
        state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        saved_mode = state["config"]["mode"]
        if saved_mode != self.config.mode:
            raise ValueError(f"{self.state_path}: a {saved_mode} run, cannot resume it as {self.config.mode}")
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])

    # training

    def batch(self, index: int) -> Batch:
        return make_batch(self.config.seed, index, self.config.batch, self.pairs)

    def loss(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        config = self.config
        if isinstance(self.net, TrajectoryNet) and self.restoration_net is not None:
            sigma = sigma_for_net(batch.sigma, config.sigma_default_share, generator)
            return joint_loss(self.net, self.restoration_net, batch, sigma, config)
        if isinstance(self.net, TrajectoryNet):
            return trajectory_loss(self.net, batch, config.reblur_weight, config.order_weight)
        assert isinstance(self.net, RestorationNet)
        trajectory = batch.trajectory
        if self.trajectory_net is not None:
            with torch.no_grad():
                predicted = order_poses(self.trajectory_net(batch.blurry, batch.intrinsics[:, 0, 0]))
            trajectory = mix_trajectories(batch.trajectory, predicted, config.mix, generator)
        sigma = sigma_for_net(batch.sigma, config.sigma_default_share, generator)
        return restoration_loss(self.net, batch, trajectory, sigma)

    def train_step(self, batch: Batch) -> tuple[float, dict[str, float]]:
        """One optimiser step on `batch` at the current step's learning rate."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, self.config)
        loss, parts = self.loss(batch, step_generator(self.config.seed, self.step))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), self.config.clip)
        self.optimizer.step()
        self.step += 1
        return loss.item(), parts

    def validate(self) -> str:
        """One line of metrics on a fixed batch of held-out photos (never trained on)."""
        held_out = PairConfig(crop=self.config.crop, dead_leaves=0.0, images=HELD_OUT_IMAGES)
        batch = make_batch(VALIDATION_SEED, 0, self.config.validation_batch, held_out)
        height, width = batch.blurry.shape[-2:]
        self.net.eval()
        with torch.no_grad():
            if isinstance(self.net, TrajectoryNet):
                estimate = self.net(batch.blurry, batch.intrinsics[:, 0, 0])
                error = matched_error_px(estimate, batch.trajectory, batch.intrinsics, height, width)
                zero = matched_error_px(torch.zeros_like(estimate), batch.trajectory, batch.intrinsics, height, width)
                ordered = ordered_error_px(estimate, batch.trajectory, batch.intrinsics, height, width)
                line = f"trajectory error {error.mean():.3f} px, zero motion {zero.mean():.3f} px, "
                line += f"ratio {error.mean() / zero.mean():.3f}, in path order {ordered.mean():.3f} px"
                if self.restoration_net is not None:
                    sigma = torch.full_like(batch.sigma, RUNTIME_SIGMA)
                    restored = self.restoration_net(batch.blurry, estimate, batch.intrinsics, sigma)
                    line += f", PSNR blurry {psnr(batch.blurry, batch.sharp).mean():.2f} dB, "
                    line += f"restored with the estimate {psnr(restored, batch.sharp).mean():.2f} dB"
            else:
                assert isinstance(self.net, RestorationNet)
                sigma = torch.full_like(batch.sigma, RUNTIME_SIGMA)
                baseline = psnr(batch.blurry, batch.sharp).mean()
                true = psnr(self.net(batch.blurry, batch.trajectory, batch.intrinsics, sigma), batch.sharp).mean()
                line = f"PSNR blurry {baseline:.2f} dB, restored with true trajectory {true:.2f} dB"
                if self.trajectory_net is not None:
                    predicted = order_poses(self.trajectory_net(batch.blurry, batch.intrinsics[:, 0, 0]))
                    restored = self.net(batch.blurry, predicted, batch.intrinsics, sigma)
                    line += f", with predicted {psnr(restored, batch.sharp).mean():.2f} dB"
        self.net.train()
        return line

    def run(self, stop_at: int | None = None) -> None:
        """Train to `config.steps` (or stop early, saved, after step `stop_at`: as if interrupted)."""
        config = self.config
        last = config.steps if stop_at is None else min(stop_at, config.steps)
        self.log(
            f"{config.mode}: steps {self.step}->{config.steps}, batch {config.batch}, crop {config.crop}, "
            f"seed {config.seed}, lr {config.lr}, {sum(p.numel() for p in self.net.parameters())} parameters"
        )
        started, start_step = time.monotonic(), self.step
        running: dict[str, float] = {}
        while self.step < last:
            loss, parts = self.train_step(self.batch(self.step))
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {self.step}")
            for key, value in {"loss": loss, **parts}.items():
                running[key] = running.get(key, 0.0) + value
            if self.step % config.log_every == 0 or self.step == config.steps:
                count = (self.step - 1) % config.log_every + 1
                rate = (self.step - start_step) / max(time.monotonic() - started, 1e-9)
                eta = (config.steps - self.step) / max(rate, 1e-9)
                means = " ".join(f"{key} {value / count:.4f}" for key, value in running.items())
                self.log(
                    f"step {self.step}/{config.steps} {means} lr {learning_rate(self.step - 1, config):.2e} "
                    f"{rate:.3f} steps/s ETA {_duration(eta)}"
                )
                running = {}
            if self.step % config.save_every == 0 or self.step == last:
                self.save()
                self.log(f"saved {self.net_path} at step {self.step}; validation: {self.validate()}")


NetT = TypeVar("NetT", bound=nn.Module)


def _frozen(net: NetT) -> NetT:
    """A helper net in eval mode whose weights the run does not train."""
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net.eval()


def _duration(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.split("\n\n")[0])
    defaults = TrainConfig(mode="trajectory", out="")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--out", required=True, help="run directory (state file and net checkpoint)")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="total optimiser steps of the run")
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--crop", type=int, default=defaults.crop, help="square crop side in pixels (>= 32)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate (Adam)")
    parser.add_argument("--save-every", type=int, default=defaults.save_every, help="steps between checkpoints")
    parser.add_argument("--log-every", type=int, default=defaults.log_every, help="steps between progress lines")
    parser.add_argument(
        "--reblur-weight", type=float, default=defaults.reblur_weight, help="trajectory: weight of the reblur L1"
    )
    parser.add_argument(
        "--order-weight", type=float, default=defaults.order_weight, help="trajectory: weight of the path-order error"
    )
    parser.add_argument(
        "--task-weight", type=float, default=defaults.task_weight, help="joint: weight of the restored image's L1"
    )
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads")
    parser.add_argument("--init", help="start from the weights of this net checkpoint")
    parser.add_argument("--trajectory-net", help="finetune: checkpoint of the trained trajectory net")
    parser.add_argument("--restoration-net", help="joint: checkpoint of the trained restoration net (kept fixed)")
    parser.add_argument("--resume", action="store_true", help=f"continue from OUT/{STATE_FILE}")
    args = parser.parse_args(argv)
    if args.crop < 32:
        parser.error("--crop must be at least 32 (the trajectory net pools five times)")
    config = TrainConfig(
        mode=args.mode,
        out=args.out,
        steps=args.steps,
        batch=args.batch,
        crop=args.crop,
        seed=args.seed,
        lr=args.lr,
        save_every=args.save_every,
        log_every=args.log_every,
        reblur_weight=args.reblur_weight,
        order_weight=args.order_weight,
        task_weight=args.task_weight,
        threads=args.threads,
        init=args.init,
        trajectory_net=args.trajectory_net,
        restoration_net=args.restoration_net,
    )
    return config, args.resume


def main(argv: list[str] | None = None) -> int:
    config, resume = parse_args(argv)
    torch.set_num_threads(config.threads)
    trainer = Trainer(config, log=lambda line: print(line, flush=True))
    if resume:
        trainer.resume()
    trainer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
