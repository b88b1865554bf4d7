"""INT8 graphs for a bundle: onnxruntime static quantisation in QDQ form, calibrated on images, gated on accuracy.

    python -m calibration.int8 BUNDLE --images DIR [--samples N] [--method entropy|minmax|percentile]
                               [--target cpu|tensorrt] [--pairs DIR] [--keep-float GROUP,...] [--max-loss-db 0.5]

The trajectory and restoration graphs are quantised (the sequence and refine graphs have no weights and stay
FP32). Convolutions get per-channel INT8 weights and 8-bit activations, as explicit QuantizeLinear /
DequantizeLinear pairs; GridSample and every node of the geometry island (`export.tensorrt.geometry_island`) stay
float. Two targets, because the two runtimes want different 8-bit activations:

- `cpu`: unsigned activations with signed weights (U8S8), the form onnxruntime's x86 kernels run fastest;
- `tensorrt`: signed, symmetric activations (TensorRT refuses non-zero zero-points), plus a TensorRT calibration
  cache (`<role>.int8-tensorrt.calibration.cache`) for TensorRT releases that still build implicit INT8 from one.

The variant is added to the bundle as `int8-<target>` (`manifest["precisions"]`) with its calibration settings and
its accuracy gate: the INT8 graphs are run beside the FP32 ones on `--pairs` (the evaluation harness's pairs:
restored PSNR against the sharp image and trajectory error) or, without pairs, on the calibration images (PSNR of
the INT8 restored image against the FP32 one). The gate fails when the restored PSNR vs sharp drops by more than
`--max-loss-db` (or, on images, when the PSNR against FP32 is below `MIN_PSNR_VS_FP32`); the runtime then refuses
the variant unless forced, and the report ranks the layer groups by how much keeping each one in float recovers,
so that `--keep-float` can make a mixed INT8/FP32 variant that passes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import re
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from calibration.fp16 import onnx_nodes
from export.tensorrt import geometry_island
from runtime import metrics
from runtime.bundle import Bundle, BundleError, load_bundle, write_manifest
from runtime.camera import intrinsics
from runtime.media import MediaError, read_image

#: The graphs that hold weights, in the order they run.
QUANTISED_ROLES = ("trajectory", "restoration")
METHODS = {
    "entropy": CalibrationMethod.Entropy,
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_SAMPLES = 32
#: Calibration images are resized so that their longer side is this (the nets' activations depend on content,
#: not on size; smaller keeps calibration fast).
CALIBRATION_SIDE = 256
DEFAULT_MAX_LOSS_DB = 0.5
#: The gate on calibration images (no sharp reference): PSNR of the INT8 restored image against the FP32 one.
MIN_PSNR_VS_FP32 = 40.0


@dataclass(frozen=True)
class Target:
    """How one runtime wants its INT8 graph."""

    name: str
    activation_type: QuantType
    weight_type: QuantType
    symmetric_activations: bool
    calibration_cache: bool


TARGETS = {
    "cpu": Target("cpu", QuantType.QUInt8, QuantType.QInt8, symmetric_activations=False, calibration_cache=False),
    "tensorrt": Target(
        "tensorrt", QuantType.QInt8, QuantType.QInt8, symmetric_activations=True, calibration_cache=True
    ),
}


class CalibrationError(ValueError):
    """A calibration that cannot run; one line naming the file or setting and the problem."""


# --- calibration data ---------------------------------------------------------------------------------------------


def calibration_images(directory: Path, samples: int, progress: Callable[[str], object]) -> list[np.ndarray]:
    """Up to `samples` images of `directory` (sorted by name) as HxWx3 float32 RGB, longer side `CALIBRATION_SIDE`.

    Files that cannot be read are reported and skipped; no readable image at all is an error.
    """
    if not directory.is_dir():
        raise CalibrationError(f"{directory}: not a folder of calibration images")
    files = sorted(path for path in directory.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)[:samples]
    images = []
    for index, path in enumerate(files, 1):
        try:
            rgb = read_image(path).rgb
        except MediaError as error:
            progress(f"calibration images: skipped {error}")
            continue
        scale = CALIBRATION_SIDE / max(rgb.shape[:2])
        if scale < 1:
            size = (max(32, round(rgb.shape[1] * scale)), max(32, round(rgb.shape[0] * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        images.append(np.ascontiguousarray(rgb, dtype=np.float32))
        progress(f"calibration images: {index}/{len(files)} {_bar(index, len(files))}")
    if not images:
        raise CalibrationError(f"{directory}: holds no readable image ({', '.join(IMAGE_SUFFIXES)})")
    return images


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = round(width * done / max(total, 1))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def graph_feeds(bundle: Bundle, images: Sequence[np.ndarray]) -> dict[str, list[dict[str, np.ndarray]]]:
    """The inputs each quantised graph sees at run time: the image and its default focal length for the
    trajectory graph; the image, the FP32 trajectory graph's estimate and the bundle's sigma for the restoration."""
    session = _session(bundle.graph_path("trajectory"))
    feeds: dict[str, list[dict[str, np.ndarray]]] = {role: [] for role in QUANTISED_ROLES}
    for rgb in images:
        height, width = rgb.shape[:2]
        batch = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
        camera = intrinsics(height, width)[None].astype(np.float32)
        trajectory_feed = {"image": batch, "focal_length": camera[:, 0, 0].copy()}
        (trajectory,) = session.run(None, trajectory_feed)
        feeds["trajectory"].append(trajectory_feed)
        feeds["restoration"].append(
            {
                "blurry": batch,
                "trajectory": trajectory,
                "intrinsics": camera,
                "sigma": np.array([bundle.default_sigma], np.float32),
            }
        )
    return feeds


class _Feeds(CalibrationDataReader):
    """onnxruntime's calibration reader over prepared feeds, saying how far it got."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]], label: str, progress: Callable[[str], object]):
        self.feeds, self.label, self.progress = feeds, label, progress
        self.iterator: Iterator[dict[str, np.ndarray]] = iter(())
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self.iterator, None)
        if feed is not None:
            self.count += 1
            self.progress(f"{self.label}: calibration run {self.count}/{len(self.feeds)}")
        return feed

    def rewind(self) -> None:
        self.iterator, self.count = iter(self.feeds), 0


# --- quantisation -------------------------------------------------------------------------------------------------


def layer_group(node_name: str) -> str:
    """The layer group of a node: the first two levels of its module path, repeat indices dropped
    (`/net/p/m_down1/m_down1.0/res/Conv` -> `p/m_down1`; `/net/down3/double_conv/...` -> `down3/double_conv`)."""
    parts = [part for part in node_name.split("/") if part][1:-1]
    return "/".join(re.sub(r"([._]\d+)+$", "", part) for part in parts[:2]) or node_name


def float_nodes(model: onnx.ModelProto) -> set[str]:
    """Nodes that must stay float: the geometry island (sampling positions and GridSample)."""
    nodes = list(model.graph.node)
    return {nodes[index].name for index in geometry_island(onnx_nodes(model.graph))}


def quantisable_groups(model: onnx.ModelProto) -> list[str]:
    """The layer groups of the convolutions that would be quantised, in graph order."""
    keep = float_nodes(model)
    groups = [layer_group(node.name) for node in model.graph.node if _quantised_op(node) and node.name not in keep]
    return list(dict.fromkeys(groups))


def _quantised_op(node: onnx.NodeProto) -> bool:
    return node.op_type in ("Conv", "ConvTranspose")


def quantise_graph(
    source: Path,
    destination: Path,
    feeds: Sequence[dict[str, np.ndarray]],
    target: Target,
    method: str,
    keep_float: Sequence[str] = (),
    progress: Callable[[str], object] = lambda _: None,
) -> None:
    """Write the QDQ INT8 graph of `source` to `destination`, calibrated on `feeds`; groups in `keep_float` and the
    geometry island stay float."""
    model = onnx.load(str(source))
    excluded = float_nodes(model) | {node.name for node in model.graph.node if layer_group(node.name) in keep_float}
    # onnxruntime's calibrators print their steps and log advice on the root logger; the progress lines say enough.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            _quantize_static(model, destination, feeds, target, method, excluded, source.stem, progress)
    finally:
        root.setLevel(level)


def _quantize_static(
    model: onnx.ModelProto,
    destination: Path,
    feeds: Sequence[dict[str, np.ndarray]],
    target: Target,
    method: str,
    excluded: set[str],
    label: str,
    progress: Callable[[str], object],
) -> None:
    quantize_static(
        model,
        destination,
        _Feeds(feeds, label, progress),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv", "ConvTranspose"],
        per_channel=True,
        activation_type=target.activation_type,
        weight_type=target.weight_type,
        nodes_to_exclude=sorted(excluded),
        calibrate_method=METHODS[method],
        extra_options={
            "ActivationSymmetric": target.symmetric_activations,
            "WeightSymmetric": True,
            "CalibTensorRangeSymmetric": target.symmetric_activations,
        },
    )


def zero_points(model: onnx.ModelProto) -> list[int]:
    """Every zero-point of the graph's QuantizeLinear / DequantizeLinear nodes (TensorRT needs them all 0)."""
    initializers = {item.name: onnx.numpy_helper.to_array(item) for item in model.graph.initializer}
    values: list[int] = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            values += [int(v) for v in np.ravel(initializers.get(node.input[2], np.zeros(1)))]
    return values


def tensorrt_calibration_cache(model: onnx.ModelProto, tensorrt_version: str) -> str:
    """TensorRT's calibration-cache text for a symmetric QDQ graph: one `tensor: hex(float32 scale)` line per
    activation a QuantizeLinear reads, the scale being the QDQ graph's own (amax / 127)."""
    initializers = {item.name: onnx.numpy_helper.to_array(item) for item in model.graph.initializer}
    weights = {item.name for item in model.graph.initializer}
    lines = [f"TRT-{tensorrt_version.replace('.', '')}-EntropyCalibration2"]
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in weights:
            continue
        scale = float(np.ravel(initializers[node.input[1]])[0])
        lines.append(f"{node.input[0]}: {struct.pack('>f', scale).hex()}")
    return "\n".join(dict.fromkeys(lines)) + "\n"


# --- the accuracy gate --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One gate sample: a blurry HxWx3 float32 RGB image and its focal length, with the sharp image and the true
    trajectory when known (evaluation pairs)."""

    blurry: np.ndarray
    focal_length: float
    sharp: np.ndarray | None = None
    trajectory: np.ndarray | None = None


@dataclass(frozen=True)
class Gate:
    """What a reduced-precision variant measured against FP32, and whether it passed."""

    passed: bool
    measured_on: str  # "pairs" (against sharp images) or "images" (against the FP32 output)
    samples: int
    max_loss_db: float
    #: Mean PSNR of the INT8 restored image against the FP32 one.
    psnr_vs_fp32: float
    #: Pairs only: mean restored PSNR vs sharp, FP32 and INT8, their difference, and the trajectory errors (px).
    psnr_fp32: float | None = None
    psnr_int8: float | None = None
    loss_db: float | None = None
    trajectory_error_fp32: float | None = None
    trajectory_error_int8: float | None = None

    @property
    def summary(self) -> str:
        if self.measured_on == "pairs":
            return (
                f"restored PSNR vs sharp {self.psnr_fp32:.2f} -> {self.psnr_int8:.2f} dB, loss {self.loss_db:.2f} dB "
                f"(max {self.max_loss_db}) on {self.samples} pairs"
            )
        return f"PSNR vs the FP32 output {self.psnr_vs_fp32:.2f} dB (min {MIN_PSNR_VS_FP32}) on {self.samples} images"


#: What one graph set gives per sample: the restored image (clipped to [0, 1]) and the trajectory.
Outputs = list[tuple[np.ndarray, np.ndarray]]


def run_graphs(paths: dict[str, Path], samples: Sequence[Sample], sigma: float) -> Outputs:
    """The trajectory and restoration graphs at `paths` on every sample (onnxruntime CPU)."""
    trajectory_session, restoration_session = (_session(paths[role]) for role in QUANTISED_ROLES)
    outputs = []
    for sample in samples:
        height, width = sample.blurry.shape[:2]
        batch = np.ascontiguousarray(sample.blurry.transpose(2, 0, 1)[None])
        camera = intrinsics(height, width, sample.focal_length)[None].astype(np.float32)
        (trajectory,) = trajectory_session.run(None, {"image": batch, "focal_length": camera[:, 0, 0].copy()})
        feed = {"blurry": batch, "trajectory": trajectory, "intrinsics": camera, "sigma": np.array([sigma], np.float32)}
        (restored,) = restoration_session.run(None, feed)
        outputs.append((np.clip(restored[0].transpose(1, 2, 0), 0, 1), trajectory[0]))
    return outputs


def judge(fp32: Outputs, reduced: Outputs, samples: Sequence[Sample], max_loss_db: float) -> Gate:
    """The gate: on pairs, the loss of restored PSNR vs sharp must be at most `max_loss_db`; on images without a
    sharp reference, the PSNR of the reduced-precision output against the FP32 one at least `MIN_PSNR_VS_FP32`."""
    vs_fp32 = float(np.mean([metrics.psnr(low[0], high[0]) for low, high in zip(reduced, fp32, strict=True)]))
    if not all(sample.sharp is not None and sample.trajectory is not None for sample in samples):
        return Gate(vs_fp32 >= MIN_PSNR_VS_FP32, "images", len(samples), max_loss_db, vs_fp32)

    sharp = [sample.sharp for sample in samples if sample.sharp is not None]
    truth = [sample.trajectory for sample in samples if sample.trajectory is not None]
    sizes = [sample.blurry.shape[:2] for sample in samples]
    focal_lengths = [sample.focal_length for sample in samples]

    def psnr(outputs: Outputs) -> float:
        return float(np.mean([metrics.psnr(out[0], image) for out, image in zip(outputs, sharp, strict=True)]))

    def error(outputs: Outputs) -> float:
        errors = [
            metrics.trajectory_error(out[1], true, height, width, focal)
            for out, true, (height, width), focal in zip(outputs, truth, sizes, focal_lengths, strict=True)
        ]
        return float(np.mean(errors))

    psnr_fp32, psnr_int8 = psnr(fp32), psnr(reduced)
    loss = psnr_fp32 - psnr_int8
    return Gate(
        loss <= max_loss_db,
        "pairs",
        len(samples),
        max_loss_db,
        vs_fp32,
        psnr_fp32,
        psnr_int8,
        loss,
        error(fp32),
        error(reduced),
    )


def pair_samples(directory: Path, n_positions: int) -> list[Sample]:
    """The evaluation harness's pairs (`runtime.evaluate.read_pairs`) as gate samples."""
    from runtime.evaluate import read_pairs

    return [
        Sample(read_image(pair.blurry).rgb, pair.focal_length, read_image(pair.sharp).rgb, pair.trajectory)
        for pair in read_pairs(directory, n_positions)
    ]


# --- the command ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """One calibration run's choices, recorded in the manifest."""

    target: str = "cpu"
    method: str = "entropy"
    samples: int = DEFAULT_SAMPLES
    keep_float: tuple[str, ...] = ()
    max_loss_db: float = DEFAULT_MAX_LOSS_DB

    @property
    def precision(self) -> str:
        return f"int8-{self.target}"


def calibrate(
    bundle_dir: str | Path,
    images: str | Path,
    settings: Settings = Settings(),
    pairs: str | Path | None = None,
    sensitivity: bool | None = None,
    progress: Callable[[str], object] = print,
) -> dict[str, Any]:
    """Add the INT8 variant `settings.precision` to the bundle, gated; returns its manifest entry.

    `sensitivity` (default: when the gate fails) adds the per-layer-group report. The graphs are written first
    under temporary names and the manifest last, so a failure leaves the bundle as it was.
    """
    if settings.target not in TARGETS:
        raise CalibrationError(f"target {settings.target!r} is not one of {', '.join(TARGETS)}")
    if settings.method not in METHODS:
        raise CalibrationError(f"method {settings.method!r} is not one of {', '.join(METHODS)}")
    if settings.samples < 1:
        raise CalibrationError(f"samples must be at least 1, got {settings.samples}")
    bundle = load_bundle(bundle_dir)
    target = TARGETS[settings.target]
    fp32 = {role: bundle.graph_path(role) for role in QUANTISED_ROLES}
    groups = {group for role in QUANTISED_ROLES for group in quantisable_groups(onnx.load(str(fp32[role])))}
    unknown = sorted(set(settings.keep_float) - groups)
    if unknown:
        raise CalibrationError(
            f"--keep-float: no layer group {', '.join(unknown)}; groups: {', '.join(sorted(groups))}"
        )
    calibration = calibration_images(Path(images), settings.samples, progress)
    feeds = graph_feeds(bundle, calibration)
    samples = (
        pair_samples(Path(pairs), bundle.n_positions)
        if pairs is not None
        else [Sample(rgb, float(max(rgb.shape[:2]))) for rgb in calibration]
    )
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=bundle.path) as scratch:
        work = Path(scratch)
        quantised = _quantise_all(fp32, work, feeds, target, settings, settings.keep_float, progress)
        progress(f"gate: FP32 and {settings.precision} on {len(samples)} {'pairs' if pairs else 'images'}")
        reference = run_graphs(fp32, samples, bundle.default_sigma)
        gate = judge(reference, run_graphs(quantised, samples, bundle.default_sigma), samples, settings.max_loss_db)
        progress(f"gate {'passed' if gate.passed else 'FAILED'}: {gate.summary}")
        entry: dict[str, Any] = {
            "graphs": {role: f"{role}.{settings.precision}.onnx" for role in QUANTISED_ROLES},
            "calibration": {
                **asdict(settings),
                "keep_float": list(settings.keep_float),
                "images": str(images),
                "images_used": len(calibration),
                "calibration_side": CALIBRATION_SIDE,
                "activations": "int8 symmetric" if target.symmetric_activations else "uint8 asymmetric",
                "weights": "int8 symmetric per channel",
                "quantised_ops": ["Conv", "ConvTranspose"],
                "float": "geometry island (sampling positions, GridSample), --keep-float groups, other ops",
                "onnxruntime": onnxruntime.__version__,
            },
            "gate": {**asdict(gate), "summary": gate.summary},
        }
        if sensitivity or (sensitivity is None and not gate.passed):
            entry["sensitivity"] = _sensitivity(
                fp32, work, feeds, target, settings, samples, reference, bundle, progress
            )
        for role, path in quantised.items():
            os.replace(path, bundle.path / entry["graphs"][role])
        if target.calibration_cache:
            version = str(bundle.manifest.get("tensorrt_min_version", "8.6"))
            for role in QUANTISED_ROLES:
                cache = tensorrt_calibration_cache(onnx.load(str(bundle.path / entry["graphs"][role])), version)
                (bundle.path / f"{role}.{settings.precision}.calibration.cache").write_text(cache)
    precisions = {**bundle.precisions, settings.precision: entry}
    write_manifest(bundle.path, {**bundle.manifest, "precisions": precisions})
    return entry


def _quantise_all(
    fp32: dict[str, Path],
    work: Path,
    feeds: dict[str, list[dict[str, np.ndarray]]],
    target: Target,
    settings: Settings,
    keep_float: Sequence[str],
    progress: Callable[[str], object],
) -> dict[str, Path]:
    paths = {}
    for role in QUANTISED_ROLES:
        paths[role] = work / f"{role}.{'-'.join(keep_float) or 'all'}.onnx".replace("/", "_")
        quantise_graph(fp32[role], paths[role], feeds[role], target, settings.method, keep_float, progress)
    return paths


def _sensitivity(
    fp32: dict[str, Path],
    work: Path,
    feeds: dict[str, list[dict[str, np.ndarray]]],
    target: Target,
    settings: Settings,
    samples: Sequence[Sample],
    reference: Outputs,
    bundle: Bundle,
    progress: Callable[[str], object],
) -> list[dict[str, Any]]:
    """Per layer group: the gate's figures with that group (and the `--keep-float` ones) kept in float, the group
    that recovers most first."""
    groups = [group for role in QUANTISED_ROLES for group in quantisable_groups(onnx.load(str(fp32[role])))]
    rows = []
    for index, group in enumerate(groups, 1):
        if group in settings.keep_float:
            continue
        progress(f"sensitivity: {index}/{len(groups)} keeping {group} in float")
        paths = _quantise_all(fp32, work, feeds, target, settings, (*settings.keep_float, group), lambda _: None)
        gate = judge(reference, run_graphs(paths, samples, bundle.default_sigma), samples, settings.max_loss_db)
        rows.append(
            {"keep_float": group, "passed": gate.passed, "psnr_vs_fp32": gate.psnr_vs_fp32, "loss_db": gate.loss_db}
        )
    return sorted(rows, key=lambda row: -row["psnr_vs_fp32"])


def _session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m calibration.int8", description=__doc__.splitlines()[0])
    parse.add_argument("bundle", type=Path, help="bundle directory (python -m export.onnx)")
    parse.add_argument("--images", type=Path, required=True, help="folder of calibration images (blurry photos)")
    parse.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help=f"images used (default {DEFAULT_SAMPLES})")
    parse.add_argument("--method", choices=METHODS, default="entropy", help="calibration method (default entropy)")
    parse.add_argument("--target", choices=TARGETS, default="cpu", help="runtime the graph is for (default cpu)")
    parse.add_argument("--pairs", type=Path, help="evaluation pairs (pairs.json) for the gate; default: the images")
    parse.add_argument(
        "--max-loss-db", type=float, default=DEFAULT_MAX_LOSS_DB, help="gate: restored PSNR loss allowed"
    )
    parse.add_argument("--keep-float", default="", metavar="GROUP,...", help="layer groups to keep in float (mixed)")
    parse.add_argument("--sensitivity", action="store_true", help="report per-group sensitivity even when it passes")
    return parse


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings(
        target=args.target,
        method=args.method,
        samples=args.samples,
        keep_float=tuple(group.strip() for group in args.keep_float.split(",") if group.strip()),
        max_loss_db=args.max_loss_db,
    )
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    try:
        entry = calibrate(args.bundle, args.images, settings, args.pairs, args.sensitivity or None, log)
    except (BundleError, CalibrationError, MediaError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report(settings.precision, entry), end="")
    return 0 if entry["gate"]["passed"] else 1


def report(precision: str, entry: dict[str, Any]) -> str:
    """The Markdown summary of one variant: gate figures and, when measured, the sensitivity table."""
    gate = entry["gate"]
    lines = [f"{precision}: gate {'passed' if gate['passed'] else 'FAILED'}: {gate['summary']}"]
    if gate["trajectory_error_fp32"] is not None:
        lines.append(
            f"trajectory error {gate['trajectory_error_fp32']:.2f} px (FP32) -> {gate['trajectory_error_int8']:.2f} px"
        )
    if "sensitivity" in entry:
        lines += ["", "| kept in float | PSNR vs FP32 dB | loss vs sharp dB | gate |", "|---|---:|---:|---|"]
        for row in entry["sensitivity"]:
            loss = "-" if row["loss_db"] is None else f"{row['loss_db']:.2f}"
            lines.append(
                f"| {row['keep_float']} | {row['psnr_vs_fp32']:.2f} | {loss} | {'pass' if row['passed'] else 'fail'} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
