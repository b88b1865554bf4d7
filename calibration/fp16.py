"""Mixed-precision ONNX: FP16 everywhere except an FP32 island holding the geometry, float32 at the boundary.

    python -m calibration.fp16 restoration.onnx restoration.fp16.onnx
    python -m calibration.fp16 BUNDLE --pairs DIR | --images DIR     # add the gated `fp16` variant to a bundle

TensorRT 11 has no FP16 builder flag: a network's precision is what its ONNX says (strong typing). This writes
that graph with `onnx` alone. The island is every GridSample and every node upstream of a GridSample's grid input
(`runtime.core.backends.fp32_island`): the sampling positions, computed from the trajectory, the intrinsics and the
image size. In FP16, normalised grid coordinates step by ~4.9e-4, half a pixel at 1920 wide; in FP32 they are
exact enough. Everything else computes in FP16: float32 tensors become float16, float initializers and
constants of FP16 nodes are stored as float16 (values beyond FP16's +-65504 are clipped), and Casts are inserted
wherever a tensor crosses between the two. Graph inputs and outputs stay float32, so callers see no change.

Inputs the ONNX spec types as float32 only (Resize's `scales`) stay float32, and an op that has no float16
variant stays FP32 as a whole. Subgraphs (If, Loop) are not converted: the bundle's lint forbids control flow.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from calibration.gate import (
    DEFAULT_MAX_LOSS_DB,
    Sample,
    SampleError,
    image_samples,
    judge,
    pair_samples,
    read_images,
    run_graphs,
)
from runtime.core.backends.fp32_island import SHAPE_OF, GraphNode, geometry_island
from runtime.core.bundle import BundleError, add_precision, first_line, load_bundle
from runtime.core.precisions import GATED_ROLES
from runtime.io.media import MediaError

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = float(np.finfo(np.float16).max)
_DEFAULT_DOMAINS = ("", "ai.onnx")
#: Ops whose output dtype comes from an attribute, which the conversion rewrites.
_TYPED_BY_ATTRIBUTE = ("Cast", "Constant", "ConstantOfShape")


class ConversionError(ValueError):
    """A graph that cannot be converted; one line naming the file or node and the problem."""


def load_model(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file, with a one-line error when it is missing or not ONNX."""
    try:
        model = onnx.load(str(path))
    except Exception as error:  # OSError, protobuf's DecodeError, onnx's ValidationError (external data)
        raise ConversionError(f"{path}: cannot read it as ONNX ({first_line(error)})") from None
    if not model.HasField("graph") or not model.opset_import:
        raise ConversionError(f"{path}: not an ONNX model (no graph or opset)")
    return model


def onnx_nodes(graph: onnx.GraphProto) -> list[GraphNode]:
    """A graph's nodes as `GraphNode`s, for `geometry_island`."""
    return [
        GraphNode(
            name=node.name,
            kind=node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}",
            inputs=tuple(node.input),
            outputs=tuple(node.output),
        )
        for node in graph.node
    ]


def geometry_node_names(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes the conversion keeps in FP32 because they compute or apply the sampling grid."""
    nodes = list(model.graph.node)
    return {nodes[index].name for index in geometry_island(onnx_nodes(model.graph))}


def convert_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """The mixed-precision copy of `model` (the input is not changed); checked with full shape inference."""
    original = onnx.ModelProto()
    original.CopyFrom(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(original, check_type=True, strict_mode=True)
    except onnx.shape_inference.InferenceError as error:
        raise ConversionError(f"shape inference fails on the input graph: {str(error).splitlines()[0]}") from None
    converter = _Converter(original, inferred)
    converted = converter.run()
    try:
        converted = onnx.shape_inference.infer_shapes(converted, check_type=True, strict_mode=True)
        onnx.checker.check_model(converted, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ConversionError(f"the converted graph is invalid: {str(error).splitlines()[0]}") from None
    return converted


class _Converter:
    """One conversion: walks the nodes in order, retyping FP16 nodes and inserting Casts at island borders."""

    def __init__(self, model: onnx.ModelProto, inferred: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), 0)
        #: Current elem type of every tensor; produced tensors change as their producers are converted.
        self.types: dict[str, int] = {}
        for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
            self.types[value.name] = value.type.tensor_type.elem_type
        for tensor in self.graph.initializer:
            self.types[tensor.name] = tensor.data_type
        #: float32 constants (initializers and Constant nodes) by name: FP16 consumers get float16 copies of them.
        self.constants = {tensor.name: tensor for tensor in self.graph.initializer if tensor.data_type == FLOAT}
        for node in self.graph.node:
            value = _constant_value(node)
            if value is not None and value.data_type == FLOAT:
                self.constants[node.output[0]] = value
        self.original_types = dict(self.types)
        self.names = {name for node in self.graph.node for name in (*node.input, *node.output, node.name)}
        self.names |= set(self.types)
        self.casts: dict[tuple[str, int], str] = {}
        self.half_constants: dict[str, TensorProto] = {}

    def run(self) -> onnx.ModelProto:
        nodes = list(self.graph.node)
        island = geometry_island(onnx_nodes(self.graph))
        output: list[onnx.NodeProto] = []
        for index, original in enumerate(nodes):
            node = onnx.NodeProto()
            node.CopyFrom(original)
            schema = self._schema(node)
            constant = node.op_type == "Constant"  # stays float32; FP16 consumers get a float16 initializer copy
            half = index not in island and not constant and schema is not None and self._has_fp16(node, schema)
            if node.op_type not in SHAPE_OF:  # Shape/Size read no values: leave their input as it is
                for k, tensor in enumerate(node.input):
                    if tensor and self.original_types.get(tensor) == FLOAT:
                        follows = schema is not None and _formal_type(schema.inputs, k) in _constraints(schema)
                        node.input[k] = self._as_type(tensor, FLOAT16 if half and follows else FLOAT, output)
            if half and schema is not None:
                self._retype_attributes(node)
                for k, tensor in enumerate(node.output):
                    if (
                        tensor
                        and self.types.get(tensor) == FLOAT
                        and _formal_type(schema.outputs, k) in _constraints(schema)
                    ):
                        self.types[tensor] = FLOAT16
            output.append(node)
        self._restore_float_outputs(output)
        used = {tensor for node in output for tensor in node.input} | {value.name for value in self.graph.output}
        output = [node for node in output if node.op_type != "Constant" or node.output[0] in used]
        initializers = [tensor for tensor in self.graph.initializer if tensor.name in used]
        initializers += [tensor for tensor in self.half_constants.values() if tensor.name in used]
        del self.graph.node[:]
        self.graph.node.extend(output)
        del self.graph.initializer[:]
        self.graph.initializer.extend(initializers)
        del self.graph.value_info[:]
        self.model.metadata_props.append(
            onnx.StringStringEntryProto(key="precision", value="fp16 with an fp32 geometry island (calibration.fp16)")
        )
        return self.model

    def _schema(self, node: onnx.NodeProto) -> onnx.defs.OpSchema | None:
        if node.domain not in _DEFAULT_DOMAINS:
            return None
        try:
            return onnx.defs.get_schema(node.op_type, self.opset, "")
        except onnx.defs.SchemaError:
            return None

    def _has_fp16(self, node: onnx.NodeProto, schema: onnx.defs.OpSchema) -> bool:
        """Whether every float32 tensor of the node is typed by a constraint that also allows float16."""
        if node.op_type not in _TYPED_BY_ATTRIBUTE and any(a.name == "dtype" for a in node.attribute):
            return False  # EyeLike, Random*: output dtype fixed by an attribute we do not rewrite
        allowed = _constraints(schema)
        for params, tensors in ((schema.inputs, node.input), (schema.outputs, node.output)):
            for k, tensor in enumerate(tensors):
                formal = _formal_type(params, k)
                if tensor and self.original_types.get(tensor) == FLOAT and formal in allowed:
                    if "tensor(float16)" not in allowed[formal]:
                        return False
        return True

    def _as_type(self, tensor: str, elem_type: int, output: list[onnx.NodeProto]) -> str:
        """A tensor holding `tensor`'s values as `elem_type`: itself, a float16 initializer copy, or a Cast."""
        if self.types.get(tensor) == elem_type:
            return tensor
        if tensor in self.constants and elem_type == FLOAT16:
            if tensor not in self.half_constants:
                half = numpy_helper.from_array(_to_float16(numpy_helper.to_array(self.constants[tensor])))
                half.name = self._fresh(f"{tensor}_fp16")
                self.half_constants[tensor] = half
                self.types[half.name] = FLOAT16
            return self.half_constants[tensor].name
        key = (tensor, elem_type)
        if key not in self.casts:
            suffix = "fp16" if elem_type == FLOAT16 else "fp32"
            name = self._fresh(f"{tensor}_{suffix}")
            output.append(helper.make_node("Cast", [tensor], [name], name=self._fresh(f"{name}_cast"), to=elem_type))
            self.types[name] = elem_type
            self.casts[key] = name
        return self.casts[key]

    def _retype_attributes(self, node: onnx.NodeProto) -> None:
        """float32 in the attributes of an FP16 node: Cast's `to`, ConstantOfShape's `value`."""
        if node.op_type == "Cast":
            for attribute in node.attribute:
                if attribute.name == "to" and attribute.i == FLOAT:
                    attribute.i = FLOAT16
        elif node.op_type == "ConstantOfShape":
            value = next((attribute for attribute in node.attribute if attribute.name == "value"), None)
            if value is None:  # the default is a float32 zero
                node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float16))))
            elif value.t.data_type == FLOAT:
                value.t.CopyFrom(_half_tensor(value.t))

    def _restore_float_outputs(self, output: list[onnx.NodeProto]) -> None:
        """Graph outputs computed in FP16 get a final Cast back to float32 under their own name."""
        for value in self.graph.output:
            if self.types.get(value.name) != FLOAT16:
                continue
            inner = self._fresh(f"{value.name}_fp16")
            for node in output:
                node.input[:] = [inner if tensor == value.name else tensor for tensor in node.input]
                node.output[:] = [inner if tensor == value.name else tensor for tensor in node.output]
            output.append(
                helper.make_node("Cast", [inner], [value.name], name=self._fresh(f"{value.name}_cast"), to=FLOAT)
            )

    def _fresh(self, base: str) -> str:
        name, number = base, 1
        while name in self.names:
            name, number = f"{base}_{number}", number + 1
        self.names.add(name)
        return name


def _constraints(schema: onnx.defs.OpSchema) -> dict[str, list[str]]:
    return {constraint.type_param_str: list(constraint.allowed_type_strs) for constraint in schema.type_constraints}


def _formal_type(params: Sequence[onnx.defs.OpSchema.FormalParameter], index: int) -> str:
    """The type string of the formal parameter an input/output index binds to (variadic: the last one)."""
    if not params:
        return ""
    return params[min(index, len(params) - 1)].type_str


def _to_float16(values: np.ndarray) -> np.ndarray:
    """float16 copy with finite values clipped to FP16's range (no silent infinities)."""
    finite = np.isfinite(values)
    clipped = np.where(finite, np.clip(values, -FP16_MAX, FP16_MAX), values)
    return clipped.astype(np.float16)


def _constant_value(node: onnx.NodeProto) -> TensorProto | None:
    """The value of a default-domain Constant node as a tensor (from `value`, `value_float` or `value_floats`)."""
    if node.op_type != "Constant" or node.domain not in _DEFAULT_DOMAINS or len(node.output) != 1:
        return None
    for attribute in node.attribute:
        if attribute.name == "value":
            return attribute.t
        if attribute.name in ("value_float", "value_floats"):
            values = attribute.f if attribute.name == "value_float" else list(attribute.floats)
            return numpy_helper.from_array(np.asarray(values, dtype=np.float32))
    return None


def _half_tensor(tensor: TensorProto) -> TensorProto:
    half = numpy_helper.from_array(_to_float16(numpy_helper.to_array(tensor)), tensor.name)
    return half


def convert_file(source: str | Path, target: str | Path) -> onnx.ModelProto:
    """Convert an ONNX file and write the result; returns the converted model."""
    model = convert_model(load_model(source))
    onnx.save(model, str(target))
    return model


#: The graphs of the bundle variant: the two nets and the sequence graph (refine stays FP32: see runtime.core.engines).
VARIANT_ROLES = ("trajectory", "restoration", "sequence")


def add_fp16_variant(
    bundle_dir: str | Path,
    samples: Sequence[Sample],
    max_loss_db: float = DEFAULT_MAX_LOSS_DB,
    progress: Callable[[str], object] = print,
) -> dict[str, Any]:
    """Add the `fp16` variant (mixed-precision graphs for ort-cuda / ort-tensorrt / TensorRT 11) to a bundle,
    gated against FP32 on `samples`; returns its manifest entry. The manifest is written last."""
    bundle = load_bundle(bundle_dir)
    with tempfile.TemporaryDirectory(prefix=".fp16-", dir=bundle.path) as scratch:
        converted = {role: Path(scratch) / f"{role}.fp16.onnx" for role in VARIANT_ROLES}
        kept = {}
        for role in VARIANT_ROLES:
            progress(f"converting {role}.onnx to mixed precision")
            kept[role] = len(geometry_node_names(convert_file(bundle.graph_path(role), converted[role])))
        progress(f"gate: FP32 and FP16 on {len(samples)} samples")
        fp32 = {role: bundle.graph_path(role) for role in GATED_ROLES}
        reference = run_graphs(fp32, samples, bundle.default_sigma)
        gate = judge(reference, run_graphs(converted, samples, bundle.default_sigma), samples, max_loss_db)
        progress(f"gate {'passed' if gate.passed else 'FAILED'}: {gate.summary}")
        entry: dict[str, Any] = {
            "graphs": {role: converted[role].name for role in VARIANT_ROLES},
            "conversion": {
                "float32_nodes": kept,
                "float32": "geometry island (sampling positions, GridSample), graph inputs and outputs",
                "onnx": onnx.__version__,
            },
            "gate": {**asdict(gate), "summary": gate.summary},
        }
        add_precision(bundle.path, "fp16", {path.name: path for path in converted.values()}, entry)
    return entry


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m calibration.fp16", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="SOURCE.onnx TARGET.onnx, or BUNDLE")
    samples = parser.add_mutually_exclusive_group()
    samples.add_argument("--pairs", type=Path, help="bundle mode: evaluation pairs (pairs.json) for the gate")
    samples.add_argument("--images", type=Path, help="bundle mode: blurry images for the gate (vs the FP32 output)")
    parser.add_argument("--samples", type=int, default=16, help="bundle mode, --images: images used (default 16)")
    parser.add_argument("--max-loss-db", type=float, default=DEFAULT_MAX_LOSS_DB, help="gate: PSNR loss allowed")
    args = parser.parse_args(argv)
    if len(args.paths) == 1:
        return _bundle_main(args)
    if len(args.paths) != 2:
        parser.error("give SOURCE.onnx TARGET.onnx, or one BUNDLE directory")
    try:
        model = convert_file(args.paths[0], args.paths[1])
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    island = geometry_node_names(model)
    half = sum(1 for tensor in model.graph.initializer if tensor.data_type == FLOAT16)
    print(f"{args.paths[1]}: {len(island)} nodes kept FP32 (geometry), {half} float16 initializers")
    return 0


def _bundle_main(args: argparse.Namespace) -> int:
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.pairs is None and args.images is None:
            raise SampleError("bundle mode needs --pairs DIR or --images DIR for the accuracy gate")
        bundle = load_bundle(args.paths[0])
        samples = (
            pair_samples(args.pairs, bundle.n_positions)
            if args.pairs is not None
            else image_samples(read_images(args.images, args.samples, log))
        )
        entry = add_fp16_variant(bundle.path, samples, args.max_loss_db, log)
    except (BundleError, ConversionError, SampleError, MediaError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"fp16: gate {'passed' if entry['gate']['passed'] else 'FAILED'}: {entry['gate']['summary']}")
    return 0 if entry["gate"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
