"""The geometry island: the graph nodes an FP16 graph or engine keeps in FP32.

Every GridSample and everything upstream of its grid input (the sampling positions, computed from the trajectory,
the intrinsics and the image size only). FP16 grid coordinates step by ~0.5 px at 1920 wide. Pure, over a minimal
node interface shared by ONNX graphs (`calibration.fp16`) and TensorRT networks (`tensorrt_build`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Inputs of a GridSample node/layer: 0 the image, 1 the sampling grid.
GRID_INPUT = 1
#: Ops whose output depends only on the *shape* of their input: the upstream walk stops there.
SHAPE_OF = frozenset({"Shape", "Size"})


@dataclass(frozen=True)
class GraphNode:
    """One node (ONNX) or layer (TensorRT): its name, op kind ("GridSample", "Shape", ...) and tensor names."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def geometry_island(nodes: Sequence[GraphNode]) -> set[int]:
    """Indices of the nodes to keep in FP32: every GridSample and every node upstream of a GridSample's grid.

    The walk follows producers from each grid input and stops at shape-of nodes (Shape, Size), whose output does
    not depend on their input's values: the grid depends on the image's size, not on its pixels, so the image
    path (and, inside the restoration, the prior) stays out of the island.
    """
    producer = {tensor: index for index, node in enumerate(nodes) for tensor in node.outputs if tensor}
    island: set[int] = set()
    pending = []
    for index, node in enumerate(nodes):
        if node.kind == "GridSample":
            island.add(index)
            if len(node.inputs) > GRID_INPUT and node.inputs[GRID_INPUT] in producer:
                pending.append(producer[node.inputs[GRID_INPUT]])
    while pending:
        index = pending.pop()
        if index in island:
            continue
        island.add(index)
        if nodes[index].kind in SHAPE_OF:
            continue
        pending.extend(producer[tensor] for tensor in nodes[index].inputs if tensor in producer)
    return island
