"""INT8 graphs for a bundle: onnxruntime static quantisation in QDQ form, calibrated on images, gated on accuracy.

    python -m calibration.int8 BUNDLE --images DIR [--samples N] [--method entropy|minmax|percentile]
                               [--target cpu|tensorrt] [--pairs DIR] [--keep-float GROUP,...] [--max-loss-db 0.5]

The trajectory and restoration graphs are quantised (the sequence and refine graphs have no weights and stay
FP32). Convolutions get per-channel INT8 weights and 8-bit activations, as explicit QuantizeLinear /
DequantizeLinear pairs; GridSample and every node of the geometry island (`runtime.core.backends.fp32_island`) stay
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
import re
import struct
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from calibration.fp16 import geometry_node_names, load_model
from calibration.gate import (
    DEFAULT_MAX_LOSS_DB,
    IMAGE_SIDE,
    Outputs,
    Sample,
    SampleError,
    cpu_session,
    image_samples,
    judge,
    net_feeds,
    pair_samples,
    read_images,
    run_graphs,
)
from runtime.core.bundle import Bundle, BundleError, add_precision, load_bundle
from runtime.core.precisions import GATED_ROLES
from runtime.io.media import MediaError

#: The graphs that hold weights, in the order they run.
QUANTISED_ROLES = GATED_ROLES
METHODS = {
    "entropy": CalibrationMethod.Entropy,
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
}
DEFAULT_SAMPLES = 32


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


def graph_feeds(bundle: Bundle, images: Sequence[np.ndarray]) -> dict[str, list[dict[str, np.ndarray]]]:
    """The inputs each quantised graph sees at run time: the image and its default focal length for the
    trajectory graph; the image, the FP32 trajectory graph's estimate and the bundle's sigma for the restoration."""
    session = cpu_session(bundle.graph_path("trajectory"))
    feeds: dict[str, list[dict[str, np.ndarray]]] = {role: [] for role in QUANTISED_ROLES}
    for sample in image_samples(images):
        trajectory_feed, restoration_feed = net_feeds(session, sample.blurry, sample.focal_length, bundle.default_sigma)
        feeds["trajectory"].append(trajectory_feed)
        feeds["restoration"].append(restoration_feed)
    return feeds


class _Feeds(CalibrationDataReader):
    """onnxruntime's calibration reader over prepared feeds, saying how far it got. onnxruntime reads it one feed
    at a time (`set_range`), folding each run's activations into the ranges before the next: full-size nets have
    gigabytes of them per image."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]], label: str, progress: Callable[[str], object]):
        self.feeds, self.label, self.progress = feeds, label, progress
        self.start, self.end, self.position = 0, len(feeds), 0

    def __len__(self) -> int:
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end, self.position = start_index, end_index, start_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= min(self.end, len(self.feeds)):
            return None
        self.position += 1
        self.progress(f"{self.label}: calibration run {self.position}/{len(self.feeds)}")
        return self.feeds[self.position - 1]

    def rewind(self) -> None:
        self.position = self.start


# --- quantisation -------------------------------------------------------------------------------------------------


def layer_group(node_name: str) -> str:
    """The layer group of a node: the first two levels of its module path, repeat indices dropped
    (`/net/p/m_down1/m_down1.0/res/Conv` -> `p/m_down1`; `/net/down3/double_conv/...` -> `down3/double_conv`)."""
    parts = [part for part in node_name.split("/") if part][1:-1]
    return "/".join(re.sub(r"([._]\d+)+$", "", part) for part in parts[:2]) or node_name


def quantisable_groups(model: onnx.ModelProto) -> list[str]:
    """The layer groups of the convolutions that would be quantised, in graph order."""
    keep = geometry_node_names(model)
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
    ranges: Path | None = None,
) -> None:
    """Write the QDQ INT8 graph of `source` to `destination`, calibrated on `feeds`; groups in `keep_float` and the
    geometry island stay float. `ranges`: onnxruntime's calibration cache (JSON): read when it exists (no
    calibration runs), else written, so one graph is calibrated once however often it is re-quantised."""
    model = load_model(source)
    excluded = geometry_node_names(model) | {
        node.name for node in model.graph.node if layer_group(node.name) in keep_float
    }
    # onnxruntime's calibrators print their steps and log advice on the root logger; the progress lines say enough.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            _quantize_static(model, destination, feeds, target, method, excluded, source.stem, progress, ranges)
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
    ranges: Path | None,
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
            "CalibStridedMinMax": 1,  # one feed per calibration pass (any method, despite the name)
            "ActivationSymmetric": target.symmetric_activations,
            "WeightSymmetric": True,
            "CalibTensorRangeSymmetric": target.symmetric_activations,
        },
        calibration_cache_path=ranges,
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
    groups = [group for role in QUANTISED_ROLES for group in quantisable_groups(load_model(fp32[role]))]
    unknown = sorted(set(settings.keep_float) - set(groups))
    if unknown:
        raise CalibrationError(
            f"--keep-float: no layer group {', '.join(unknown)}; groups: {', '.join(sorted(groups))}"
        )
    calibration = read_images(Path(images), settings.samples, progress)
    feeds = graph_feeds(bundle, calibration)
    samples = pair_samples(Path(pairs), bundle.n_positions) if pairs is not None else image_samples(calibration)
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=bundle.path) as scratch:
        work = Path(scratch)
        quantiser = _Quantiser(fp32, work, feeds, target, settings)
        quantised = quantiser.quantise(settings.keep_float, progress)
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
                "calibration_side": IMAGE_SIDE,
                "activations": "int8 symmetric" if target.symmetric_activations else "uint8 asymmetric",
                "weights": "int8 symmetric per channel",
                "quantised_ops": ["Conv", "ConvTranspose"],
                "float": "geometry island (sampling positions, GridSample), --keep-float groups, other ops",
                "onnxruntime": onnxruntime.__version__,
            },
            "gate": {**asdict(gate), "summary": gate.summary},
        }
        if sensitivity or (sensitivity is None and not gate.passed):
            entry["sensitivity"] = _sensitivity(quantiser, groups, samples, reference, bundle.default_sigma, progress)
        files = {entry["graphs"][role]: path for role, path in quantised.items()}
        if target.calibration_cache:
            version = str(bundle.manifest.get("tensorrt_min_version", "8.6"))
            for role, path in quantised.items():
                cache = work / f"{role}.cache"
                cache.write_text(tensorrt_calibration_cache(load_model(path), version))
                files[f"{role}.{settings.precision}.calibration.cache"] = cache
        add_precision(bundle.path, settings.precision, files, entry)
    return entry


@dataclass(frozen=True)
class _Quantiser:
    """One calibration run's fixed parts: quantises the FP32 graphs with some groups kept in float."""

    fp32: dict[str, Path]
    work: Path
    feeds: dict[str, list[dict[str, np.ndarray]]]
    target: Target
    settings: Settings

    def quantise(self, keep_float: Sequence[str], progress: Callable[[str], object]) -> dict[str, Path]:
        paths = {}
        for role in QUANTISED_ROLES:
            paths[role] = self.work / f"{role}.{'-'.join(keep_float) or 'all'}.onnx".replace("/", "_")
            ranges = self.work / f"{role}.ranges.json"
            method = self.settings.method
            quantise_graph(
                self.fp32[role], paths[role], self.feeds[role], self.target, method, keep_float, progress, ranges
            )
        return paths


def _sensitivity(
    quantiser: _Quantiser,
    groups: Sequence[str],
    samples: Sequence[Sample],
    reference: Outputs,
    sigma: float,
    progress: Callable[[str], object],
) -> list[dict[str, Any]]:
    """Per layer group: the gate's figures with that group (and the `--keep-float` ones) kept in float, the group
    that recovers most first."""
    settings = quantiser.settings
    rows = []
    for index, group in enumerate(groups, 1):
        if group in settings.keep_float:
            continue
        progress(f"sensitivity: {index}/{len(groups)} keeping {group} in float")
        paths = quantiser.quantise((*settings.keep_float, group), lambda _: None)
        gate = judge(reference, run_graphs(paths, samples, sigma), samples, settings.max_loss_db)
        rows.append(
            {"keep_float": group, "passed": gate.passed, "psnr_vs_fp32": gate.psnr_vs_fp32, "loss_db": gate.loss_db}
        )
    return sorted(rows, key=lambda row: -row["psnr_vs_fp32"])


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
    except (BundleError, CalibrationError, SampleError, MediaError, ValueError) as error:
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
