"""Timings of the PyTorch reference: what the blur operator costs inside a restoration, and the end-to-end work.

`pmbm` (the default) times, in one run and with medians after a warm-up, the whole restoration of the full-size
net (grids, 2n+2 blur calls, n+1 prior passes), the same prior passes alone (the convolutions: the floor), and the
PMBM work alone (grids and blur calls). The authors' deformable-convolution form spends ~40% of a restoration in
the blur operator.

`warp` times one blur-operator call alone (25 warps of the image and their mean) on the inputs `python -m
runtime.benchmark` times onnxruntime's GridSample and DeformConv forms of it on.

`reference` times what `Deblurrer.restore` does, eagerly in FP32 (trajectory net, pose ordering, restoration),
for an architecture given as the bundle manifest's JSON, with random weights; it prints JSON. `python -m
runtime.benchmark --torch-reference` runs it in a subprocess, so the runtime never imports torch.

    python -m models.benchmark --size 256x256 --threads 2 --repeats 3
    python -m models.benchmark warp --size 512x512 --threads 2 --repeats 5
    python -m models.benchmark reference --size 512x512 --threads 2 --repeats 3 --architecture '{...}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from models import geometry, pmbm
from models.restoration import RestorationNet
from models.trajectory import TrajectoryNet, order_poses
from runtime.tools.feeds import warp_feed


def timed_runs(work: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of each of `repeats` runs of `work`, after one warm-up run."""
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    """Median wall time of `work` over `repeats` runs after one warm-up run."""
    return statistics.median(timed_runs(work, repeats))


def pmbm_share(height: int, width: int, repeats: int = 3, n_positions: int = 25) -> dict[str, float]:
    """Seconds for the restoration, its prior passes alone and its PMBM work alone, and the PMBM's share."""
    torch.manual_seed(0)
    net = RestorationNet().eval()
    blurry = torch.rand(1, 3, height, width)
    trajectory = 0.01 * torch.randn(1, n_positions, 3)
    camera = geometry.intrinsics(height, width)
    sigma = torch.tensor([0.01])
    prior_input = torch.rand(1, 4, height, width)
    blur_calls = net.n_iter + 1  # and as many adjoint calls: 2n + 2 in all

    def prior_passes() -> None:
        for _ in range(net.n_iter + 1):
            net.p(prior_input)

    def blur_work() -> None:
        grids = pmbm.blur_grids(trajectory, camera, height, width)
        for _ in range(blur_calls):
            pmbm.adjoint_blur(pmbm.blur(blurry, grids), grids)

    with torch.inference_mode():
        restoration = median_seconds(lambda: net(blurry, trajectory, camera, sigma), repeats)
        convolutions = median_seconds(prior_passes, repeats)
        blur = median_seconds(blur_work, repeats)
    return {
        "restoration_s": restoration,
        "prior_passes_s": convolutions,
        "pmbm_s": blur,
        "pmbm_share": blur / restoration,
        "overhead_share": (restoration - convolutions) / restoration,
    }


def warp_seconds(height: int, width: int, repeats: int = 3, n_positions: int = 25) -> list[float]:
    """Seconds of each timed run (after one warm-up) of one blur-operator call alone (the warps of
    `pmbm.warp_poses`, then their mean) on the inputs `python -m runtime.benchmark` times onnxruntime's two forms
    of it on."""
    feed = {name: torch.from_numpy(value) for name, value in warp_feed(height, width, n_positions).items()}
    with torch.inference_mode():
        return timed_runs(lambda: pmbm.warp_poses(feed["image"], feed["grid"]).mean(dim=2), repeats)


def reference_seconds(architecture: dict[str, Any], height: int, width: int, repeats: int = 3) -> list[float]:
    """Wall seconds of each timed run of the eager FP32 reference (trajectory net, ordering, restoration)."""
    torch.manual_seed(0)
    trajectory_net = TrajectoryNet(**architecture.get("trajectory", {})).eval()
    restoration_net = RestorationNet(**architecture.get("restoration", {})).eval()
    image = torch.rand(1, 3, height, width)
    camera = geometry.intrinsics(height, width).reshape(1, 3, 3)
    sigma = torch.tensor([0.01])

    def restore() -> None:
        trajectory = order_poses(trajectory_net(image, camera[:, 0, 0]))
        restoration_net(image, trajectory, camera, sigma)

    with torch.inference_mode():
        return timed_runs(restore, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("pmbm", "reference", "warp"), default="pmbm")
    parser.add_argument("--architecture", default="{}", help="reference: the bundle manifest's architecture (JSON)")
    parser.add_argument("--size", default="256x256", help="HEIGHTxWIDTH (default 256x256)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        height, width = (int(side) for side in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size {args.size!r}: expected HEIGHTxWIDTH, e.g. 256x256")
    torch.set_num_threads(args.threads)
    if args.mode == "warp":
        times = warp_seconds(height, width, args.repeats)
        seconds = statistics.median(times)
        print(
            json.dumps({"times_s": times, "warp_s": seconds, "threads": args.threads})
            if args.json
            else f"One blur-operator call (25 warps + mean), {height}x{width}, {args.threads} threads: "
            f"{seconds * 1e3:.1f} ms (median of {args.repeats})"
        )
        return 0
    if args.mode == "reference":
        times = reference_seconds(json.loads(args.architecture), height, width, args.repeats)
        print(json.dumps({"times_s": times, "median_s": statistics.median(times), "threads": args.threads}))
        return 0
    figures = pmbm_share(height, width, args.repeats)
    if args.json:
        setting = {"height": height, "width": width, "threads": args.threads, "torch": str(torch.__version__)}
        print(json.dumps({**figures, **setting}, indent=2))
        return 0
    print(f"Full-size restoration net, {height}x{width}, {args.threads} threads, torch {torch.__version__}")
    print("| work | median s | share of restoration |")
    print("|---|---|---|")
    print(f"| restoration (grids, 18 blur calls, 9 prior passes) | {figures['restoration_s']:.3f} | 100% |")
    print(
        f"| 9 prior passes alone (convolutions) | {figures['prior_passes_s']:.3f} | "
        f"{figures['prior_passes_s'] / figures['restoration_s']:.1%} |"
    )
    print(f"| PMBM alone (grids + 18 blur calls) | {figures['pmbm_s']:.3f} | {figures['pmbm_share']:.1%} |")
    print(
        f"| restoration minus convolutions | {figures['restoration_s'] - figures['prior_passes_s']:.3f} | "
        f"{figures['overhead_share']:.1%} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
