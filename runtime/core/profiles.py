"""Engine-build profiles: the precision and the min/opt/max input shapes an engine is built for.

A profile is a YAML file (`configs/build/NAME.yaml`) read by `python -m export.tensorrt --profile` and by the
runtime's `ort-tensorrt` backend. Shapes are given per dynamic axis of the bundle's graphs (batch, height,
width); `input_shapes` turns them into the concrete min/opt/max shape of every input of one graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runtime.core.precisions import ENGINE_PRECISIONS

#: The dynamic axes of every bundle graph, by the names the export gives them.
AXES = ("batch", "height", "width")
#: Shapes of one input: (min, opt, max).
ShapeRange = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


class ProfileError(ValueError):
    """A build profile that cannot be used; one line naming the file and the problem."""


@dataclass(frozen=True)
class AxisRange:
    minimum: int
    optimum: int
    maximum: int

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.minimum, self.optimum, self.maximum)


@dataclass(frozen=True)
class BuildProfile:
    """What an engine is built for. `axes` maps batch/height/width to their min/opt/max."""

    name: str
    precision: str
    axes: dict[str, AxisRange]
    workspace_mib: int = 2048
    builder_optimization_level: int = 3
    timing_cache: bool = True

    def input_shapes(self, inputs: Sequence[dict[str, Any]]) -> dict[str, ShapeRange]:
        """min/opt/max shape of each input, from the manifest's I/O description of one graph.

        A dimension is either a number (kept) or a dynamic-axis name (replaced by this profile's range).
        """
        shapes: dict[str, ShapeRange] = {}
        for value in inputs:
            picks = []
            for index in range(3):
                dims = [dim if isinstance(dim, int) else self._axis(dim).as_tuple()[index] for dim in value["shape"]]
                picks.append(tuple(dims))
            shapes[value["name"]] = (picks[0], picks[1], picks[2])
        return shapes

    def as_manifest(self) -> dict[str, Any]:
        """The profile as recorded beside an engine in the bundle's manifest."""
        return {
            "name": self.name,
            "precision": self.precision,
            **{axis: dict(zip(("min", "opt", "max"), self.axes[axis].as_tuple(), strict=True)) for axis in AXES},
            "workspace_mib": self.workspace_mib,
            "builder_optimization_level": self.builder_optimization_level,
        }

    def covers(self, batch: int, height: int, width: int) -> bool:
        """Whether inputs of this size lie inside the profile's min/max range."""
        size = {"batch": batch, "height": height, "width": width}
        return all(self.axes[a].minimum <= size[a] <= self.axes[a].maximum for a in AXES)

    def _axis(self, name: str) -> AxisRange:
        if name not in self.axes:
            raise ProfileError(f"profile {self.name}: the graph has an axis {name!r} this profile does not set")
        return self.axes[name]


def load_build_profile(path: str | Path) -> BuildProfile:
    """Read and validate a build profile YAML."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ProfileError(f"{path}: cannot read ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise ProfileError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: not a build profile (a mapping is expected)")
    try:
        profile = _parse(path.stem, data)
    except (KeyError, TypeError, ValueError) as error:
        raise ProfileError(f"{path}: {error}") from None
    return profile


def _parse(name: str, data: dict[str, Any]) -> BuildProfile:
    precision = data.get("precision", "fp32")
    if precision not in ENGINE_PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(ENGINE_PRECISIONS)}")
    axes = {}
    for axis in AXES:
        if axis not in data:
            raise ValueError(f"no {axis} range (min, opt, max)")
        entry = data[axis]
        if not isinstance(entry, dict):
            raise ValueError(f"{axis} must be a mapping with min, opt and max")
        values = [int(entry[key]) for key in ("min", "opt", "max")]
        if not 1 <= values[0] <= values[1] <= values[2]:
            raise ValueError(f"{axis} needs 1 <= min <= opt <= max, got {values}")
        axes[axis] = AxisRange(*values)
    workspace = int(data.get("workspace_mib", 2048))
    level = int(data.get("builder_optimization_level", 3))
    if workspace < 1:
        raise ValueError(f"workspace_mib must be positive, got {workspace}")
    if not 0 <= level <= 5:
        raise ValueError(f"builder_optimization_level must be 0..5, got {level}")
    return BuildProfile(name, precision, axes, workspace, level, bool(data.get("timing_cache", True)))
