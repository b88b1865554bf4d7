"""The blur operator's warps as DeformConv, the form onnxruntime's CPU provider runs fastest.

Every warp in the exported graphs is `models.pmbm.warp_poses`: `GridSample(image, grid) -> Reshape (B, C, P, H, W)`,
P poses at once; the blur operator then takes the mean over the poses (ReduceMean). onnxruntime's CPU GridSample
gives each colour channel to one thread and ran a 25-pose blur 3.2-3.3x slower than its DeformConv kernel did the
same samples (`python -m runtime.benchmark`, `docs/benchmarks.md`). The mean of P bilinear warps is a depthwise
deformable convolution: a 1 x P kernel of weights 1/P whose tap k samples the image at the position of pose k. The
warps kept per pose (the sequence graph's frames, the refine graph's derivative samples) are a 1 x 1 deformable
convolution of the image tiled P times along the channels, with one offset group per pose. So `deform_warps`
rewrites both kinds into DeformConv (opset 19), with the offsets computed once per grid and kind. The values are the
same up to float rounding: the grids hold in-range positions (reflected, or clamped for the derivative samples), so
zeros padding never applies.

TensorRT parses DeformConv only from 10.1 and our bundles reach back to 8.5, so the bundle's graphs keep
GridSample; this rewrite is made in memory when onnxruntime's CPU provider loads a graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, version_converter

#: DeformConv entered the default ONNX domain at opset 19.
DEFORM_CONV_OPSET = 19
_PREFIX = "deform_warps"
#: Initializers the rewrite adds: the two kinds' DeformConv weights, and the per-pose form's tiling and shape.
_MEAN_WEIGHT, _POSE_WEIGHT = f"{_PREFIX}_weight", f"{_PREFIX}_pose_weight"
_TILES, _POSES_CHANNELS = f"{_PREFIX}_tiles", f"{_PREFIX}_poses_channels"


def deform_warps(model: onnx.ModelProto, n_positions: int, channels: int = 3) -> tuple[onnx.ModelProto, int]:
    """`model` with every warp over `n_positions` poses of a `channels`-channel image as a DeformConv, and how many
    were rewritten.

    Two kinds of warp are rewritten: averaged (`GridSample -> Reshape -> ReduceMean` over the poses, the blur
    operator) into one depthwise DeformConv with a 1 x P kernel of weights 1/P; and per pose (`GridSample ->
    Reshape (B, C, P, H, W)` used as it is: the sequence graph's frames, the refine graph's derivative samples) into
    the image tiled P times along the channels, a 1 x 1 DeformConv with one offset group per pose, and a reshape and
    transpose back to `(B, C, P, H, W)`. DeformConv needs the channel count as an attribute. Shape inference loses
    it behind some slices, so an image whose count it cannot tell is taken to have `channels` (the bundle graphs
    warp RGB images only; a wrong count would fail loudly at run time); one it knows to differ keeps its
    GridSample. The model is returned unchanged (and the count is 0) when it has no such warp.
    """
    if not _warps(model):
        return model, 0
    if _default_opset(model) < DEFORM_CONV_OPSET:
        model = _converted(model, DEFORM_CONV_OPSET)
    graph = model.graph
    shapes = _static_shapes(model)
    # Nodes are told apart by their first output (ONNX outputs are unique names).
    replaced = {chain[0].output[0]: chain for chain in _warps(model) if _rewritable(chain, shapes, channels)}
    dropped = {node.output[0] for chain in replaced.values() for node in chain[1:]}
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.full((channels, 1, 1, n_positions), 1 / n_positions, np.float32), _MEAN_WEIGHT),
            numpy_helper.from_array(np.ones((n_positions * channels, 1, 1, 1), np.float32), _POSE_WEIGHT),
            numpy_helper.from_array(np.array([1, n_positions, 1, 1], np.int64), _TILES),
            numpy_helper.from_array(np.array([n_positions, channels], np.int64), _POSES_CHANNELS),
        ]
    )
    producers = {name: node for node in graph.node for name in node.output}
    offsets: dict[tuple[str, bool], str] = {}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.output[0] in dropped:
            continue
        if node.output[0] not in replaced:
            nodes.append(node)
            continue
        # In the GridSample's place (its image and grid exist there): the offsets of its grid for this kind of
        # warp, once, then the DeformConv, which writes the last output of the chain it replaces.
        chain = replaced[node.output[0]]
        image, grid, averaged = node.input[0], node.input[1], len(chain) == 3
        if (grid, averaged) not in offsets:
            offsets[grid, averaged] = f"{_PREFIX}_offsets{len(offsets)}"
            taps = np.arange(n_positions) - n_positions // 2 if averaged else np.zeros(n_positions)
            planes = _planar_grid(graph, producers, grid)
            nodes += _offset_nodes(graph, image, grid, planes, taps, offsets[grid, averaged])
        output = chain[-1].output[0]
        if averaged:
            nodes.append(_mean_deform_conv(image, offsets[grid, True], output, n_positions, channels))
        else:
            nodes += _pose_deform_conv(image, offsets[grid, False], output, n_positions, channels)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    unused = [tensor for tensor in graph.initializer if tensor.name not in used]
    for tensor in unused:  # the dropped Reshapes' shapes, ReduceMeans' axes, and weights of a kind not present
        graph.initializer.remove(tensor)
    return model, len(replaced)


def _mean_deform_conv(image: str, offsets: str, output: str, n_positions: int, channels: int) -> onnx.NodeProto:
    """The mean of the image's warps: a depthwise DeformConv whose 1 x P kernel has a tap per pose."""
    half = n_positions // 2
    return helper.make_node(
        "DeformConv",
        [image, _MEAN_WEIGHT, offsets],
        [output],
        name=f"{output}_{_PREFIX}",
        kernel_shape=[1, n_positions],
        pads=[0, half, 0, n_positions - 1 - half],
        group=channels,
        offset_group=1,
    )


def _pose_deform_conv(image: str, offsets: str, output: str, n_positions: int, channels: int) -> list[onnx.NodeProto]:
    """Each of the image's warps `(B, C, P, H, W)`: the image tiled P times along the channels, a 1 x 1 DeformConv
    with one offset group (one pose) per tile, then `(B, P*C, H, W)` -> `(B, P, C, H, W)` -> `(B, C, P, H, W)`."""

    def scoped(value: str) -> str:
        return f"{output}_{_PREFIX}_{value}"

    return [
        helper.make_node("Tile", [image, _TILES], [scoped("tiled")]),
        helper.make_node(
            "DeformConv",
            [scoped("tiled"), _POSE_WEIGHT, offsets],
            [scoped("warped")],
            kernel_shape=[1, 1],
            group=n_positions * channels,
            offset_group=n_positions,
        ),
        helper.make_node("Shape", [image], [scoped("batch")], start=0, end=1),
        helper.make_node("Shape", [image], [scoped("size")], start=2, end=4),
        helper.make_node("Concat", [scoped("batch"), _POSES_CHANNELS, scoped("size")], [scoped("shape")], axis=0),
        helper.make_node("Reshape", [scoped("warped"), scoped("shape")], [scoped("poses")]),
        helper.make_node("Transpose", [scoped("poses")], [output], perm=[0, 2, 1, 3, 4]),
    ]


def averaged_warp_model(n_positions: int, channels: int = 3, opset: int = 17) -> onnx.ModelProto:
    """One blur-operator call alone, as the bundle graphs hold it: image `(B, C, H, W)` and grid `(B, P*H, W, 2)`
    -> `GridSample -> Reshape (B, C, P, H, W) -> ReduceMean` over the poses `(B, C, H, W)`. For timing the two
    forms of the warp (`deform_warps` rewrites it)."""
    poses = numpy_helper.from_array(np.array([n_positions], np.int64), "n_positions")
    nodes = [
        helper.make_node(
            "GridSample", ["image", "grid"], ["warped"], mode="bilinear", padding_mode="zeros", align_corners=1
        ),
        helper.make_node("Shape", ["image"], ["batch_channels"], start=0, end=2),
        helper.make_node("Shape", ["image"], ["size"], start=2, end=4),
        helper.make_node("Concat", ["batch_channels", "n_positions", "size"], ["pose_shape"], axis=0),
        helper.make_node("Reshape", ["warped", "pose_shape"], ["poses"]),
        helper.make_node("ReduceMean", ["poses"], ["blurred"], axes=[2], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "averaged_warp",
        [
            helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["batch", channels, "height", "width"]),
            helper.make_tensor_value_info("grid", onnx.TensorProto.FLOAT, ["batch", "rows", "width", 2]),
        ],
        [helper.make_tensor_value_info("blurred", onnx.TensorProto.FLOAT, ["batch", channels, "height", "width"])],
        [poses],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _warps(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, ...]]:
    """Candidate warps over poses, as `models.pmbm.warp_poses` exports them: a GridSample (bilinear, zeros padding,
    align_corners) whose only consumer is a Reshape (to `(B, C, P, H, W)`: `_rewritable` checks the rank). Averaged
    ones, where the Reshape's only consumer is a ReduceMean dropping axis 2 (the poses), come as (GridSample,
    Reshape, ReduceMean); the rest as (GridSample, Reshape)."""
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    chains: list[tuple[onnx.NodeProto, ...]] = []
    for node in graph.node:
        if node.op_type != "GridSample" or _attributes(node) != {
            "mode": b"bilinear",
            "padding_mode": b"zeros",
            "align_corners": 1,
        }:
            continue
        reshape = _only_consumer(consumers, node, "Reshape")
        if reshape is None:
            continue
        reduce_mean = _only_consumer(consumers, reshape, "ReduceMean")
        if reduce_mean is None:
            chains.append((node, reshape))
            continue
        attributes = _attributes(reduce_mean)
        axes = attributes.get("axes")
        if axes is None and len(reduce_mean.input) > 1:
            axes = _constant(graph, reduce_mean.input[1])
        if attributes.get("keepdims") == 0 and axes is not None and list(np.ravel(axes)) == [2]:
            chains.append((node, reshape, reduce_mean))
    return chains


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _only_consumer(
    consumers: dict[str, list[onnx.NodeProto]], node: onnx.NodeProto, op_type: str
) -> onnx.NodeProto | None:
    users = consumers.get(node.output[0], [])
    return users[0] if len(users) == 1 and users[0].op_type == op_type else None


def _constant(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    """The value of an initializer or Constant node by name (None if it is neither)."""
    for tensor in graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def _default_opset(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 1)


def _is_weight(tensor: onnx.TensorProto) -> bool:
    """A float initializer of more than 64 values: data no shape or opset rule reads (unlike small constants)."""
    return tensor.data_type == onnx.TensorProto.FLOAT and int(np.prod(tensor.dims)) > 64


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its weights declared as inputs of their shape instead of held: what shape inference and the
    opset converter need, without copying and scanning tens of megabytes (full-size restoration graph: converted
    and inferred in 0.1 s instead of 1.3 s)."""
    graph = model.graph
    declared = [
        helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
        for tensor in graph.initializer
        if _is_weight(tensor)
    ]
    return helper.make_model(
        helper.make_graph(
            graph.node,
            graph.name,
            [*graph.input, *declared],
            graph.output,
            [tensor for tensor in graph.initializer if not _is_weight(tensor)],
            value_info=graph.value_info,
        ),
        opset_imports=model.opset_import,
        ir_version=model.ir_version,
    )


def _converted(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The model converted to `opset`: its skeleton converted, then given its weights back."""
    weights = [tensor for tensor in model.graph.initializer if _is_weight(tensor)]
    converted = version_converter.convert_version(_skeleton(model), opset)
    names = {tensor.name for tensor in weights}
    inputs = [value for value in converted.graph.input if value.name not in names]
    del converted.graph.input[:]
    converted.graph.input.extend(inputs)
    converted.graph.initializer.extend(weights)
    return converted


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """The shapes shape inference can tell, by tensor name: a list of dimensions, None where not static."""
    inferred = onnx.shape_inference.infer_shapes(_skeleton(model))
    return {
        value.name: [dim.dim_value if dim.HasField("dim_value") else None for dim in value.type.tensor_type.shape.dim]
        for value in (*inferred.graph.value_info, *inferred.graph.input)
        if value.type.tensor_type.HasField("shape")
    }


def _rewritable(chain: tuple[onnx.NodeProto, ...], shapes: dict[str, list[int | None]], channels: int) -> bool:
    """A warp of an image with `channels` channels (or an unknown count) whose Reshape makes `(B, C, P, H, W)`."""
    image = shapes.get(chain[0].input[0], [])
    count = image[1] if len(image) == 4 else None
    return count in (None, channels) and len(shapes.get(chain[1].output[0], [])) == 5


def _planar_grid(graph: onnx.GraphProto, producers: dict[str, onnx.NodeProto], grid: str) -> tuple[str, str] | None:
    """The x and y planes `(B, P, H, W)` a grid was stacked from, when the graph made it as
    `geometry.normalized_grid` exports: `Reshape(Concat(Unsqueeze(x, -1), Unsqueeze(y, -1), axis=-1))`. Reading
    them saves two strided Gathers over the grid per offsets (~50 ms at 512x512, profiled). `producers` maps each
    tensor name to the node that makes it."""
    reshape = producers.get(grid)
    concat = producers.get(reshape.input[0]) if reshape is not None and reshape.op_type == "Reshape" else None
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 2:
        return None
    if _attributes(concat).get("axis") not in (-1, 4):
        return None
    planes = []
    for name in concat.input:
        unsqueeze = producers.get(name)
        if unsqueeze is None or unsqueeze.op_type != "Unsqueeze" or len(unsqueeze.input) != 2:
            return None
        axes = _constant(graph, unsqueeze.input[1])
        if axes is None or list(np.ravel(axes)) not in ([-1], [4]):
            return None
        planes.append(unsqueeze.input[0])
    return planes[0], planes[1]


def _offset_nodes(
    graph: onnx.GraphProto, image: str, grid: str, planes: tuple[str, str] | None, taps: np.ndarray, output: str
) -> list[onnx.NodeProto]:
    """Nodes computing DeformConv offsets `(B, 2P, H, W)` into `output` from a grid `(B, P*H, W, 2)` (normalised,
    align_corners) over `image (B, C, H, W)`: per pose k, (dy, dx) = its position minus the pixel's, shifted by
    `taps[k]` columns (where pose k's kernel tap sits: the 1 x P kernel, padded by P // 2 on the left, puts tap k at
    k - P // 2; a 1 x 1 kernel puts every tap at 0). The grid's x and y come from `planes` (`_planar_grid`) when
    given, else are read out of the grid."""
    n_positions = len(taps)
    grid_x, grid_y = planes or ("grid_x", "grid_y")
    external = {image, grid, *(planes or ())}

    def scoped(value: str) -> str:
        return value if value in external else f"{output}_{value}"

    def constant(value: str, array: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(array, scoped(value)))
        return value

    constant("taps", np.asarray(taps, np.float32).reshape(n_positions, 1, 1))
    constant("zero", np.array(0, np.float32))
    constant("one", np.array(1, np.float32))
    constant("half", np.array(0.5, np.float32))
    for index, axis_name in enumerate(("x_axis", "y_axis", "two", "three")):
        constant(axis_name, np.array(index, np.int64))
    reads = (
        []
        if planes
        else [("Gather", [grid, axis], name, {"axis": 3}) for axis, name in (("x_axis", grid_x), ("y_axis", grid_y))]
    )
    constant("poses", np.array([n_positions], np.int64))
    constant("pairs", np.array([2 * n_positions], np.int64))
    constant("unsqueeze_rows", np.array([1], np.int64))
    constant("unsqueeze_pairs", np.array([2], np.int64))
    float32: dict[str, Any] = {"to": onnx.TensorProto.FLOAT}
    steps: list[tuple[str, list[str], str, dict[str, Any]]] = [
        ("Shape", [image], "shape", {}),
        ("Shape", [image], "batch", {"start": 0, "end": 1}),
        ("Shape", [image], "size", {"start": 2, "end": 4}),
        ("Gather", ["shape", "two"], "height", {"axis": 0}),
        ("Gather", ["shape", "three"], "width", {"axis": 0}),
        ("Cast", ["height"], "height_f", float32),
        ("Cast", ["width"], "width_f", float32),
        # Normalised grid -> pixels: x = (g + 1) (W - 1) / 2 (align_corners=True).
        ("Sub", ["width_f", "one"], "width_span", {}),
        ("Sub", ["height_f", "one"], "height_span", {}),
        ("Mul", ["width_span", "half"], "x_scale", {}),
        ("Mul", ["height_span", "half"], "y_scale", {}),
        *reads,
        ("Add", [grid_x, "one"], "x_shifted", {}),
        ("Add", [grid_y, "one"], "y_shifted", {}),
        ("Mul", ["x_shifted", "x_scale"], "x_flat", {}),
        ("Mul", ["y_shifted", "y_scale"], "y_flat", {}),
        ("Concat", ["batch", "poses", "size"], "pose_shape", {"axis": 0}),
        ("Reshape", ["x_flat", "pose_shape"], "x_position", {}),
        ("Reshape", ["y_flat", "pose_shape"], "y_position", {}),
        ("Range", ["zero", "width_f", "one"], "columns", {}),
        ("Range", ["zero", "height_f", "one"], "row_values", {}),
        ("Unsqueeze", ["row_values", "unsqueeze_rows"], "rows", {}),
        ("Add", ["columns", "taps"], "tap_columns", {}),
        ("Sub", ["x_position", "tap_columns"], "dx", {}),
        ("Sub", ["y_position", "rows"], "dy", {}),
        ("Unsqueeze", ["dy", "unsqueeze_pairs"], "dy_pair", {}),
        ("Unsqueeze", ["dx", "unsqueeze_pairs"], "dx_pair", {}),
        ("Concat", ["dy_pair", "dx_pair"], "pair_values", {"axis": 2}),
        ("Concat", ["batch", "pairs", "size"], "offset_shape", {"axis": 0}),
    ]
    nodes = [
        helper.make_node(op_type, [scoped(value) for value in inputs], [scoped(result)], **attributes)
        for op_type, inputs, result, attributes in steps
    ]
    nodes.append(helper.make_node("Reshape", [scoped("pair_values"), scoped("offset_shape")], [output]))
    return nodes
