"""TensorRT-compatibility lint for ONNX graphs: `python -m export.lint BUNDLE_OR_ONNX... [--trt-version X]`.

Every graph we ship must build with TensorRT, yet no TensorRT or GPU exists on our development and CI machines.
So this checks, statically and with `onnx` alone, what TensorRT's ONNX parser would reject or, worse, silently
misread: the default-domain opset, op types and domains, attribute values (GridSample, Pad, Resize, Scatter),
tensor dtypes and Q/DQ zero-points, against the table in `export.trt_support`. Passing does not prove an engine
builds; failing means it will not, or will not compute what the graph says.

Exit status: 0 when every graph is clean for every version asked, 1 when any problem was found (with
`--trt-version all`: for any version), 2 on usage or I/O errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper
from onnx.external_data_helper import uses_external_data

from export import trt_support
from export.trt_support import DEFAULT_TRT_VERSION, Profile

__all__ = [
    "DEFAULT_TRT_VERSION",
    "LintError",
    "Problem",
    "lint_model",
    "lint_model_versions",
    "lint_path",
    "load_model",
    "main",
    "onnx_files",
    "resolve_versions",
]

_DEFAULT_DOMAINS = ("", "ai.onnx")
_MAX_REPEATS = 5  # problems of one repetitive kind (a dtype, a zero-point) shown before the rest are counted


@dataclass(frozen=True)
class Problem:
    """One reason a graph would not build, or would build wrong, with TensorRT."""

    graph: str  # the file (or graph name) the problem is in
    node: str  # node name, '' for a graph-level problem; nodes in subgraphs read 'Parent/attr/child'
    op_type: str
    message: str

    def __str__(self) -> str:
        if self.node or self.op_type:
            return f"{self.graph}: node {self.node or '<unnamed>'} ({self.op_type}): {self.message}"
        return f"{self.graph}: {self.message}"


class LintError(ValueError):
    """What cannot be linted: a missing path, a file that is not ONNX, an empty bundle, an unknown version."""


# --- Version-independent facts about a model, gathered once. ------------------------------------------------------


@dataclass
class _Facts:
    """A model's nodes (subgraphs and local functions included), tensor types and constants."""

    opset: int | None
    nodes: list[tuple[str, onnx.NodeProto]] = field(default_factory=list)
    function_nodes: dict[tuple[str, str], list[tuple[str, onnx.NodeProto]]] = field(default_factory=dict)
    types: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # name -> (elem_type, rank or None)
    constants: dict[str, TensorProto] = field(default_factory=dict)
    io: list[tuple[str, str, int]] = field(default_factory=list)  # ('input'|'output', name, elem_type)
    initializers: list[tuple[str, int]] = field(default_factory=list)
    produced: list[tuple[str, onnx.NodeProto, str]] = field(default_factory=list)  # (node label, node, output)


def _default_opset(model: onnx.ModelProto) -> int | None:
    for entry in model.opset_import:
        if entry.domain in _DEFAULT_DOMAINS:
            return int(entry.version)
    return None


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shape/type inference, best-effort: a graph it cannot handle is linted with the types it already carries."""
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception:  # any failure of this optional enrichment leaves the model as it was
        return model


def _record_value_info(facts: _Facts, value: onnx.ValueInfoProto) -> None:
    if not value.type.HasField("tensor_type"):
        return
    tensor_type = value.type.tensor_type
    rank = len(tensor_type.shape.dim) if tensor_type.HasField("shape") else None
    facts.types[value.name] = (tensor_type.elem_type, rank)


def _walk_graph(facts: _Facts, graph: onnx.GraphProto, prefix: str) -> None:
    """Record a graph's tensors and nodes, then recurse into the subgraphs of its nodes (If/Loop/Scan bodies)."""
    for value in [*graph.input, *graph.output, *graph.value_info]:
        _record_value_info(facts, value)
    for tensor in graph.initializer:
        facts.types.setdefault(tensor.name, (tensor.data_type, len(tensor.dims)))
        facts.constants[tensor.name] = tensor
        facts.initializers.append((tensor.name, tensor.data_type))
    _walk_nodes(facts, graph.node, prefix, facts.nodes)


def _walk_nodes(
    facts: _Facts, nodes: Sequence[onnx.NodeProto], prefix: str, into: list[tuple[str, onnx.NodeProto]]
) -> None:
    for index, node in enumerate(nodes):
        label = prefix + (node.name or f"#{index}")
        into.append((label, node))
        for output in node.output:
            if output:
                facts.produced.append((label, node, output))
        if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS:
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.type == AttributeProto.TENSOR and node.output:
                    facts.constants[node.output[0]] = attribute.t
                    facts.types.setdefault(node.output[0], (attribute.t.data_type, len(attribute.t.dims)))
        if node.op_type == "Cast" and node.domain in _DEFAULT_DOMAINS and node.output:
            for attribute in node.attribute:
                if attribute.name == "to":
                    facts.types.setdefault(node.output[0], (int(attribute.i), None))
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                _walk_graph(facts, attribute.g, f"{label}/{attribute.name}/")
            elif attribute.type == AttributeProto.GRAPHS:
                for number, subgraph in enumerate(attribute.graphs):
                    _walk_graph(facts, subgraph, f"{label}/{attribute.name}[{number}]/")


def _gather(model: onnx.ModelProto) -> _Facts:
    inferred = _infer(model)
    facts = _Facts(opset=_default_opset(model))
    graph = inferred.graph
    facts.io = [("input", value.name, value.type.tensor_type.elem_type) for value in graph.input] + [
        ("output", value.name, value.type.tensor_type.elem_type) for value in graph.output
    ]
    initializer_names = {tensor.name for tensor in graph.initializer}
    facts.io = [entry for entry in facts.io if entry[1] not in initializer_names]  # old IR: weights as inputs
    _walk_graph(facts, graph, "")
    for function in inferred.functions:
        body: list[tuple[str, onnx.NodeProto]] = []
        _walk_nodes(facts, function.node, f"function {function.domain}.{function.name}/", body)
        facts.function_nodes[(function.domain, function.name)] = body
    return facts


# --- The checks. --------------------------------------------------------------------------------------------------


def _attributes(node: onnx.NodeProto) -> dict[str, AttributeProto]:
    return {attribute.name: attribute for attribute in node.attribute}


def _string_attribute(node: onnx.NodeProto, name: str) -> str | None:
    attribute = _attributes(node).get(name)
    if attribute is None or attribute.type != AttributeProto.STRING:
        return None
    return attribute.s.decode("utf-8", errors="replace")


def _int_attribute(node: onnx.NodeProto, name: str) -> int | None:
    attribute = _attributes(node).get(name)
    if attribute is None or attribute.type != AttributeProto.INT:
        return None
    return int(attribute.i)


def _dtype_name(elem_type: int) -> str:
    try:
        return str(TensorProto.DataType.Name(elem_type))
    except ValueError:
        return f"dtype {elem_type}"


class _Checker:
    """The checks of one model against one profile; `problems` collects what they find."""

    def __init__(self, facts: _Facts, profile: Profile, name: str) -> None:
        self.facts = facts
        self.profile = profile
        self.name = name
        self.problems: list[Problem] = []
        self.repeats: dict[str, int] = {}  # kind -> problems of that kind found

    def add(self, label: str, node: onnx.NodeProto | None, message: str, *, kind: str | None = None) -> None:
        """Record a problem; of a given `kind`, only the first few are kept and the rest counted."""
        if kind is not None:
            self.repeats[kind] = self.repeats.get(kind, 0) + 1
            if self.repeats[kind] > _MAX_REPEATS:
                return
        op_type = "" if node is None else node.op_type
        self.problems.append(Problem(self.name, label, op_type, message))

    def run(self) -> list[Problem]:
        """Every check, in the order a reader fixes them: opset, nodes, dtypes."""
        self.check_opset()
        for label, node in self.facts.nodes:
            self.check_node(label, node)
        if self.profile.local_functions:
            bodies = self.facts.function_nodes
            every_node = [*self.facts.nodes, *(entry for body in bodies.values() for entry in body)]
            called = {(node.domain, node.op_type) for _, node in every_node}
            for key, body in bodies.items():
                if key in called:
                    for label, node in body:
                        self.check_node(label, node)
        self.check_dtypes()
        for kind, count in self.repeats.items():
            if count > _MAX_REPEATS:
                self.add("", None, f"... and {count - _MAX_REPEATS} more {kind}")
        return self.problems

    def check_opset(self) -> None:
        """The parser refuses a model whose default-domain opset is outside its range."""
        opset, profile = self.facts.opset, self.profile
        if opset is None:
            self.add("", None, "the model imports no default-domain (ai.onnx) opset")
        elif not profile.opset_min <= opset <= profile.opset_max:
            low, high = profile.opset_min, profile.opset_max
            accepted = f"{low}..{high}" if low > 1 else f"<= {high}"
            self.add(
                "", None, f"default-domain opset {opset} is outside what TensorRT's ONNX parser accepts ({accepted})"
            )

    def check_node(self, label: str, node: onnx.NodeProto) -> None:
        """Op type (parser support, project policy), then the attribute rules of that op."""
        if node.domain not in _DEFAULT_DOMAINS:
            self.check_custom_node(label, node)
            return
        op_type = node.op_type
        reasons = []
        if op_type not in self.profile.ops:
            since = trt_support.op_since(op_type)
            reason = "not supported by TensorRT's ONNX parser" + (f" before {since}" if since else "")
            note = trt_support.UNSUPPORTED_OP_NOTES.get(op_type)
            reasons.append(f"{reason} ({note})" if note else reason)
        policy = trt_support.POLICY_FORBIDDEN_OPS.get(op_type)
        if policy is not None:
            reasons.append(f"forbidden by project policy: {policy}")
        if reasons:
            self.add(label, node, "; ".join(reasons))
            return
        attribute_check = {
            "GridSample": self.check_grid_sample,
            "Pad": self.check_pad,
            "Resize": self.check_resize,
            "ScatterND": self.check_scatter,
            "ScatterElements": self.check_scatter,
            "QuantizeLinear": self.check_zero_point,
            "DequantizeLinear": self.check_zero_point,
        }.get(op_type)
        if attribute_check is not None:
            attribute_check(label, node)

    def check_custom_node(self, label: str, node: onnx.NodeProto) -> None:
        """A node outside the default domain: a model-local function call, an allowed plugin, or a problem."""
        key = (node.domain, node.op_type)
        if key in trt_support.ALLOWED_CUSTOM_OPS:
            return
        if key in self.facts.function_nodes:
            if not self.profile.local_functions:
                self.add(
                    label,
                    node,
                    f"calls model-local function {node.domain}.{node.op_type}: TensorRT's ONNX parser imports "
                    "functions only from 9.0; export with functions inlined",
                )
            return
        message = (
            f"op of domain '{node.domain}' (not the default ONNX domain): TensorRT would need a plugin for it, "
            "and none is on our allow-list"
        )
        note = trt_support.UNSUPPORTED_OP_NOTES.get(node.op_type)
        self.add(label, node, f"{message} ({note})" if note else message)

    def check_grid_sample(self, label: str, node: onnx.NodeProto) -> None:
        mode = _string_attribute(node, "mode")
        opset = self.facts.opset or 0
        if mode is None and opset >= 20:
            self.add(
                label,
                node,
                "mode is not set, so at opset >= 20 it means 'linear', a spelling TensorRT's parser does not "
                "recognise (NVIDIA/TensorRT#4646): export at opset <= 19 with mode 'bilinear'",
            )
        elif mode in trt_support.GRIDSAMPLE_MISREAD_MODES:
            spelling = trt_support.GRIDSAMPLE_MISREAD_MODES[mode]
            self.add(
                label,
                node,
                f"mode '{mode}' (the opset-20 spelling) is not recognised by TensorRT's parser, which silently "
                f"samples as nearest instead (NVIDIA/TensorRT#4646): export at opset <= 19, where it is "
                f"spelled '{spelling}'",
            )
        elif mode is not None and mode not in trt_support.GRIDSAMPLE_MODES:
            self.add(label, node, f"mode '{mode}' is not one TensorRT's parser recognises; it would sample as nearest")
        padding = _string_attribute(node, "padding_mode")
        if padding is not None and padding not in trt_support.GRIDSAMPLE_PADDING_MODES:
            self.add(label, node, f"padding_mode '{padding}' is not supported by TensorRT (zeros, border, reflection)")
        rank = self.facts.types.get(node.input[0], (0, None))[1] if node.input else None
        if rank is not None and not 4 <= rank <= self.profile.gridsample_max_rank:
            allowed = "4-D (5-D from 11.2)" if self.profile.gridsample_max_rank == 4 else "4-D or 5-D"
            self.add(label, node, f"input is {rank}-D; TensorRT's GridSample takes {allowed}")

    def check_pad(self, label: str, node: onnx.NodeProto) -> None:
        mode = _string_attribute(node, "mode") or "constant"
        if mode not in self.profile.pad_modes:
            since = trt_support.pad_mode_since(mode)
            when = f"before {since}" if since else f"(only {', '.join(sorted(self.profile.pad_modes))})"
            self.add(label, node, f"mode '{mode}' is not supported by TensorRT's parser {when}")

    def check_resize(self, label: str, node: onnx.NodeProto) -> None:
        mode = _string_attribute(node, "mode") or "nearest"
        if mode not in trt_support.RESIZE_MODES:
            self.add(label, node, f"mode '{mode}' is not supported by TensorRT's parser (nearest, linear)")
        transform = _string_attribute(node, "coordinate_transformation_mode") or "half_pixel"
        if transform not in trt_support.RESIZE_COORDINATE_MODES:
            allowed = ", ".join(sorted(trt_support.RESIZE_COORDINATE_MODES))
            self.add(label, node, f"coordinate_transformation_mode '{transform}' is not supported ({allowed})")
        rounding = _string_attribute(node, "nearest_mode") or "round_prefer_floor"
        if mode == "nearest" and rounding not in trt_support.RESIZE_NEAREST_MODES:
            allowed = ", ".join(sorted(trt_support.RESIZE_NEAREST_MODES))
            self.add(label, node, f"nearest_mode '{rounding}' is not supported ({allowed})")
        if _int_attribute(node, "antialias"):
            self.add(label, node, "antialias is not supported by TensorRT's parser")
        policy = _string_attribute(node, "keep_aspect_ratio_policy") or "stretch"
        if policy != "stretch":
            self.add(label, node, f"keep_aspect_ratio_policy '{policy}' is not supported (stretch only)")

    def check_scatter(self, label: str, node: onnx.NodeProto) -> None:
        reduction = _string_attribute(node, "reduction") or "none"
        if reduction == "none":
            return
        if node.op_type == "ScatterND":
            self.add(label, node, f"reduction '{reduction}' is not supported by TensorRT's parser (none only)")
        elif not self.profile.scatter_reduction:
            self.add(label, node, f"reduction '{reduction}' is not supported by TensorRT's parser before 10.0")

    def check_zero_point(self, label: str, node: onnx.NodeProto) -> None:
        """TensorRT's Q/DQ is symmetric: a zero-point we can read must be all zeros."""
        if len(node.input) < 3 or not node.input[2]:
            return
        tensor = self.facts.constants.get(node.input[2])
        if tensor is None or uses_external_data(tensor):
            return  # computed, or stored outside the model: cannot be checked here
        values = numpy_helper.to_array(tensor)
        if np.any(values != 0):
            shown = np.unique(values)[:4].tolist()
            self.add(
                label,
                node,
                f"zero-point '{node.input[2]}' is non-zero ({shown}): TensorRT rejects non-zero zero-points; "
                "quantize symmetrically (onnxruntime quantize_static with ActivationSymmetric=True)",
                kind="Q/DQ nodes with non-zero zero-points",
            )

    def dtype_reason(self, elem_type: int, network_io: bool) -> str | None:
        """Why a tensor of this dtype is a problem, or None when it is fine."""
        policy = trt_support.POLICY_FORBIDDEN_DTYPES.get(elem_type)
        if policy is not None:
            return f"forbidden by project policy: {policy}"
        if elem_type in self.profile.dtypes or elem_type == TensorProto.UNDEFINED:
            return None
        if elem_type in trt_support.IO_ONLY_DTYPES:
            if network_io:
                return None
            return "TensorRT takes it only for network inputs and outputs (its Q/DQ is INT8, symmetric)"
        since = trt_support.dtype_since(elem_type)
        return f"not supported by TensorRT before {since}" if since else "not a type TensorRT supports"

    def check_dtypes(self) -> None:
        """Graph inputs and outputs, initializers, then the outputs of nodes (named by their producer)."""
        for kind, name, elem_type in self.facts.io:
            reason = self.dtype_reason(elem_type, network_io=True)
            if reason is not None:
                self.add("", None, f"{kind} '{name}' has dtype {_dtype_name(elem_type)}: {reason}")
        tensors: list[tuple[str, onnx.NodeProto | None, str, int]] = [
            ("", None, f"initializer '{name}'", elem_type) for name, elem_type in self.facts.initializers
        ]
        io_names = {name for _, name, _ in self.facts.io}
        for label, node, output in self.facts.produced:
            if output not in io_names and output in self.facts.types:
                tensors.append((label, node, f"output '{output}'", self.facts.types[output][0]))
        for label, producer, what, elem_type in tensors:
            reason = self.dtype_reason(elem_type, network_io=False)
            if reason is not None:
                dtype = _dtype_name(elem_type)
                self.add(label, producer, f"{what} has dtype {dtype}: {reason}", kind=f"tensors of dtype {dtype}")


# --- Public API. ---------------------------------------------------------------------------------------------------


def _profile(trt_version: str) -> Profile:
    try:
        return trt_support.profile_for(trt_version)
    except ValueError as error:
        raise LintError(str(error)) from None


def resolve_versions(trt_version: str) -> list[str]:
    """`'all'` -> every version in the table; otherwise the one version, normalised (`'10'` -> `'10.0'`)."""
    if trt_version.strip().lower() == "all":
        return list(trt_support.ALL_VERSIONS)
    return [_profile(trt_version).name]


def lint_model_versions(
    model: onnx.ModelProto, trt_versions: Sequence[str], *, name: str | None = None
) -> dict[str, list[Problem]]:
    """Lint one model for several TensorRT versions, inferring its shapes once: version -> problems."""
    profiles = [_profile(version) for version in trt_versions]
    facts = _gather(model)
    label = name or model.graph.name or "model"
    return {profile.name: _Checker(facts, profile, label).run() for profile in profiles}


def lint_model(
    model: onnx.ModelProto, trt_version: str = DEFAULT_TRT_VERSION, *, name: str | None = None
) -> list[Problem]:
    """Everything in `model` that TensorRT `trt_version`'s ONNX parser would reject or misread; [] when clean.

    A pure function of the ModelProto (it is not modified). `name` labels the problems (default: the graph name).
    """
    profile = _profile(trt_version)
    return lint_model_versions(model, [profile.name], name=name)[profile.name]


def onnx_files(path: str | os.PathLike[str]) -> list[Path]:
    """The graphs at `path`: the file itself, or every `*.onnx` of a bundle directory, sorted."""
    path = Path(path)
    if path.is_dir():
        files = sorted(child for child in path.glob("*.onnx") if child.is_file())
        if not files:
            raise LintError(f"{path}: no .onnx files in this directory")
        return files
    if not path.exists():
        raise LintError(f"{path}: no such file or directory")
    if path.suffix.lower() != ".onnx":
        raise LintError(f"{path}: not an .onnx file or a bundle directory")
    return [path]


def load_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Load an ONNX file without its external weights (the lint needs none); LintError if it is not ONNX."""
    path = Path(path)
    try:
        model = onnx.load(path, load_external_data=False)
    except FileNotFoundError:
        raise LintError(f"{path}: no such file or directory") from None
    except OSError as error:
        raise LintError(f"{path}: cannot read: {error.strerror or error}") from None
    except Exception as error:  # protobuf raises its own DecodeError and friends
        raise LintError(f"{path}: not an ONNX model ({type(error).__name__})") from None
    if not model.HasField("graph") or not model.opset_import or model.ir_version <= 0:
        raise LintError(f"{path}: not an ONNX model (no graph, opset or IR version)")
    return model


def lint_path(path: str | os.PathLike[str], trt_version: str = DEFAULT_TRT_VERSION) -> list[Problem]:
    """Lint an `.onnx` file or every graph of a bundle directory; LintError for what cannot be linted."""
    _profile(trt_version)
    problems: list[Problem] = []
    for file in onnx_files(path):
        problems += lint_model(load_model(file), trt_version, name=str(file))
    return problems


# --- Command line. -------------------------------------------------------------------------------------------------


def _plural(count: int) -> str:
    return f"{count} problem{'s' if count != 1 else ''}"


def _report(file: Path, results: dict[str, list[Problem]]) -> None:
    """Print each problem on its own line, then one summary line for the file."""
    if len(results) == 1:
        version, problems = next(iter(results.items()))
        for problem in problems:
            print(problem)
        print(f"{file}: {'ok' if not problems else _plural(len(problems))} (TensorRT {version})")
        return
    versions_of: dict[str, list[str]] = {}
    for version, problems in results.items():
        for problem in problems:
            versions_of.setdefault(str(problem), []).append(version)
    for text, versions in versions_of.items():
        print(f"{text} [TensorRT {', '.join(versions)}]")
    passes = [version for version, problems in results.items() if not problems]
    fails = [f"{version} ({_plural(len(problems))})" for version, problems in results.items() if problems]
    if not fails:
        print(f"{file}: ok (TensorRT {', '.join(passes)})")
    else:
        print(f"{file}: passes TensorRT {', '.join(passes) or 'none'}; fails {', '.join(fails)}")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: parse arguments, lint, print; returns the exit status (0 clean, 1 problems, 2 errors)."""
    parser = argparse.ArgumentParser(
        prog="python -m export.lint",
        description="Check ONNX graphs (files or bundle directories) against TensorRT's ONNX parser.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="BUNDLE_OR_ONNX")
    parser.add_argument(
        "--trt-version",
        default=DEFAULT_TRT_VERSION,
        help=f"TensorRT version to check for: {trt_support.KNOWN_VERSIONS_TEXT} (default: {DEFAULT_TRT_VERSION})",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed its message
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        versions = resolve_versions(args.trt_version)
    except LintError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    status = 0
    for path in args.paths:
        try:
            files = onnx_files(path)
        except LintError as error:
            print(f"{parser.prog}: error: {error}", file=sys.stderr)
            status = 2
            continue
        for file in files:
            try:
                model = load_model(file)
            except LintError as error:
                print(f"{parser.prog}: error: {error}", file=sys.stderr)
                status = 2
                continue
            results = lint_model_versions(model, versions, name=str(file))
            _report(file, results)
            if any(results.values()):
                status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
