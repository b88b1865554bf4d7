"""Export the reference nets to a self-describing ONNX bundle and prove it: checker, lint, onnxruntime parity.

    python -m export.onnx --trajectory CKPT --restoration CKPT --out BUNDLE [--opset 17] [--sigma 0.01]
    python -m export.onnx --pretrained --out BUNDLE   # the authors' published checkpoints, cached (export.pretrained)

Opset 17 (default) goes through the TorchScript exporter, the only one that still writes opset 17: it is the
highest opset TensorRT 8.5/8.6 (JetPack 5.1/6.0) parse. Opsets 18 and 19 use the dynamo exporter and need
TensorRT 10. Opset 20 and later spell GridSample's mode `linear`, which TensorRT's parser runs as nearest:
refused. The bundle is built in a temporary directory beside the target and renamed into place only when every
graph passed, so a failed export leaves nothing behind. `--force` replaces a bundle at `--out` (a folder whose
manifest.json is one of ours), never anything else, nor a folder holding the checkpoints being exported.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import torch
from torch import nn

from export.graph_io import (
    DEFAULT_OPSET,
    OLDEST_TENSORRT,
    SUPPORTED_OPSETS,
    TOLERANCES,
    TRACE_SHAPE,
    VERIFY_SHAPE,
    ExportError,
    check_onnx,
    io_description,
    onnxruntime_parity,
    write_onnx,
)
from export.graphs import GRAPHS, MIN_SIDE, GraphSpec, example_inputs
from export.pretrained import DownloadError, fetch_pretrained
from export.refine import export_refine
from models.checkpoint import CheckpointError, architecture_of, load_restoration_net, load_trajectory_net
from models.restoration import RestorationNet
from models.trajectory import TrajectoryNet
from runtime.core import textfiles
from runtime.core.bundle import MANIFEST, SCHEMA_VERSION, file_sha256, load_bundle, write_manifest

DEFAULT_SIGMA = 0.01


def export_bundle(
    trajectory_net: TrajectoryNet,
    restoration_net: RestorationNet,
    out: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    sigma: float = DEFAULT_SIGMA,
    sources: dict[str, Path] | None = None,
    overwrite: bool = False,
    log: Any = print,
) -> Path:
    """Write the bundle directory `out` (trajectory, restoration, sequence and refine graphs plus manifest.json).

    `sources` names the checkpoint files the nets came from, recorded with their sha256. An existing `out` is
    replaced only with `overwrite` and only when it is a bundle not holding any of `sources` (`_replaceable`).
    Raises `ExportError` on any failed check; `out` is then untouched.
    """
    out = Path(out)
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(
            f"opset {opset} not supported: choose one of {SUPPORTED_OPSETS} (GridSample must be "
            "spelled 'bilinear', opset <= 19)"
        )
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise ExportError(f"{out}: already exists; pass --force to replace it")
        _replaceable(out, sources)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        staging.chmod(0o755)  # mkdtemp makes it private; a bundle is shared like any other output
    except OSError as error:
        raise ExportError(f"{out}: cannot write the bundle there ({error.strerror or error})") from None
    try:
        started = time.perf_counter()
        trajectory_net.eval()
        restoration_net.eval()
        graphs, parity = {}, {}
        for spec in GRAPHS:
            module = spec.build(trajectory_net, restoration_net).eval()
            graphs[spec.role], parity[spec.role] = _export_graph(
                module, spec, staging, opset, trajectory_net.n_positions
            )
            log(f"{spec.role}: exported, checked, linted; parity {_format(parity[spec.role])}")
        manifest = _manifest(trajectory_net, restoration_net, graphs, parity, opset, sigma, sources)
        write_manifest(staging, manifest)
        manifest = export_refine(staging, opset, log)
        load_bundle(staging)
        _move_into_place(staging, out, sources)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    elapsed = time.perf_counter() - started
    sizes = ", ".join(f"{name} {entry['bytes'] / 1e6:.1f} MB" for name, entry in manifest["files"].items())
    log(f"bundle {out} written in {elapsed:.1f} s: {sizes}")
    return out


def _export_graph(
    module: nn.Module, spec: GraphSpec, directory: Path, opset: int, n_positions: int
) -> tuple[dict[str, Any], dict[str, float]]:
    """Export one graph, check it fully, lint it for TensorRT and compare onnxruntime with PyTorch."""
    path = directory / spec.file
    trace = example_inputs(spec, *TRACE_SHAPE, n_positions)
    write_onnx(module, trace, spec.outputs, spec.dynamic_axes, path, opset)
    model = check_onnx(path, spec.file, OLDEST_TENSORRT[opset][0])
    return io_description(model), _parity(module, spec, path, n_positions)


def _parity(module: nn.Module, spec: GraphSpec, path: Path, n_positions: int) -> dict[str, float]:
    """Max abs difference per output, onnxruntime CPU vs PyTorch, at a shape unlike the traced one."""
    inputs = example_inputs(spec, *VERIFY_SHAPE, n_positions, seed=1)
    return onnxruntime_parity(module, inputs, path, spec.outputs, TOLERANCES)


def _manifest(
    trajectory_net: TrajectoryNet,
    restoration_net: RestorationNet,
    graphs: dict[str, dict[str, Any]],
    parity: dict[str, dict[str, float]],
    opset: int,
    sigma: float,
    sources: dict[str, Path] | None,
) -> dict[str, Any]:
    tensorrt, jetpack = OLDEST_TENSORRT[opset]
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_positions": trajectory_net.n_positions,
        "architecture": {
            "trajectory": architecture_of(trajectory_net)[1],
            "restoration": architecture_of(restoration_net)[1],
        },
        "sources": {
            role: {"file": Path(path).name, "sha256": file_sha256(Path(path))} for role, path in (sources or {}).items()
        },
        "normalisation": "RGB float32 NCHW in [0, 1]; the trajectory graph subtracts 0.5 itself",
        "trajectory_convention": "(pitch, yaw, roll) rotation vectors in radians, Rodrigues with eps 1e-6, "
        "in the reference's time order",
        "focal_length": {
            "unit": "pixels",
            "default": "max(height, width)",
            "principal_point_default": "(width / 2, height / 2)",
        },
        "default_sigma": sigma,
        "min_side": MIN_SIDE,
        "opset": opset,
        "exporter": "dynamo" if opset >= 18 else "torchscript",
        "tensorrt_min_version": tensorrt,
        "jetpack_min_version": jetpack,
        "graphs": {spec.role: {"file": spec.file, **graphs[spec.role]} for spec in GRAPHS},
        "tools": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "parity": {
            "batch_height_width": list(VERIFY_SHAPE),
            "backend": "onnxruntime CPUExecutionProvider",
            "max_abs_error": {name: error for figures in parity.values() for name, error in figures.items()},
            "tolerance": TOLERANCES,
        },
        "engines": [],
    }


def _move_into_place(staging: Path, out: Path, sources: dict[str, Path] | None = None) -> None:
    """Rename the finished bundle to `out`; an existing `out`, checked again to be a bundle without `sources`
    (`_replaceable`), is swapped out first and removed after."""
    if not (out.exists() or out.is_symlink()):
        staging.rename(out)
        return
    _replaceable(out, sources)
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    out.rename(retired / out.name)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)


def _replaceable(out: Path, sources: dict[str, Path] | None) -> None:
    """Raise ExportError unless `out` is a folder (not a link) holding a manifest.json of this schema, and none of
    the checkpoint files in `sources` lies inside it: `--force` replaces a bundle, never anything else."""

    def refuse(reason: str) -> ExportError:
        return ExportError(f"{out}: not a bundle ({reason}); --force replaces only a bundle folder")

    if out.is_symlink() or not out.is_dir():
        raise refuse("a link" if out.is_symlink() else "not a folder")
    try:
        text = textfiles.read_text(out / MANIFEST, f"its {MANIFEST}")
    except textfiles.TextFileError as error:
        raise refuse(str(error)) from None
    try:
        manifest = textfiles.parse_json(text)
    except textfiles.TextFileError as error:
        raise refuse(f"its {MANIFEST}: {error}") from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if type(version) is not int or version != SCHEMA_VERSION:
        raise refuse(f"its {MANIFEST} has schema_version {version!r:.40}, not {SCHEMA_VERSION}")
    inside = out.resolve()
    for role, source in (sources or {}).items():
        if Path(source).resolve().is_relative_to(inside):
            raise ExportError(f"{out}: holds the {role} checkpoint being exported ({source}); it is not replaced")


def _format(errors: dict[str, float]) -> str:
    return ", ".join(f"{name} {error:.1e}" for name, error in errors.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.onnx", description="Export checkpoints to a bundle.")
    parser.add_argument("--trajectory", type=Path, help="trajectory-net checkpoint (.pkl or ours)")
    parser.add_argument("--restoration", type=Path, help="restoration-net checkpoint")
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="download the authors' published checkpoints to the user cache (once) instead of the two above",
    )
    parser.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, one of {SUPPORTED_OPSETS} (default {DEFAULT_OPSET}: TensorRT 8.5+)",
    )
    parser.add_argument(
        "--sigma",
        type=float,
        default=DEFAULT_SIGMA,
        help=f"default noise level recorded in the manifest (default {DEFAULT_SIGMA})",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    args = parser.parse_args(argv)
    if args.pretrained and (args.trajectory or args.restoration):
        parser.error("--pretrained fetches both checkpoints: do not combine it with --trajectory/--restoration")
    if not args.pretrained and not (args.trajectory and args.restoration):
        parser.error("give --trajectory and --restoration, or --pretrained")
    try:
        if args.pretrained:
            fetched = fetch_pretrained()
            args.trajectory, args.restoration = fetched["trajectory"], fetched["restoration"]
        trajectory_net = load_trajectory_net(args.trajectory)
        restoration_net = load_restoration_net(args.restoration)
        export_bundle(
            trajectory_net,
            restoration_net,
            args.out,
            opset=args.opset,
            sigma=args.sigma,
            sources={"trajectory": args.trajectory, "restoration": args.restoration},
            overwrite=args.force,
        )
    except (CheckpointError, DownloadError, ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
