"""TensorRT engine records: what the bundle manifest says about each engine, and whether an engine fits here.

An engine (`{role}.{precision}.engine`) is tied to the exact TensorRT release that built it, to the GPU, and to
the ONNX graph it came from; loading one built elsewhere fails with TensorRT's "version tag does not match" or,
worse, runs wrongly. So each engine is recorded in `manifest["engines"]` with everything needed to refuse it
before TensorRT sees it, and the refusal says how to rebuild. Pure functions over manifest dicts: no TensorRT,
no CUDA, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from runtime.core.precisions import ENGINE_PRECISIONS, engine_source
from runtime.core.profiles import AXES, AxisRange, BuildProfile

#: The graph roles an engine can be built from (the bundle's ONNX graphs).
ROLES = ("trajectory", "restoration", "sequence", "refine")
#: How the precision reached TensorRT: builder flags plus per-layer constraints (8.6/10), or a strongly typed
#: network parsed from a mixed-precision ONNX (TensorRT 11, which has no FP16 flag).
TYPINGS = ("weak", "strong")
_FIELDS = (
    "file",
    "role",
    "precision",
    "tensorrt_version",
    "gpu_name",
    "compute_capability",
    "profile",
    "onnx_sha256",
    "built",
)
#: Record fields that are text and appear in messages, so hold one printable line.
_TEXT_FIELDS = ("file", "tensorrt_version", "gpu_name", "compute_capability", "onnx_sha256", "built")


class EngineRecordError(ValueError):
    """A manifest engine entry that cannot be read; one line naming the entry and the problem."""


@dataclass(frozen=True)
class Machine:
    """What an engine must match: the TensorRT release, the GPU model and its compute capability ("8.7")."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


@dataclass(frozen=True)
class EngineRecord:
    """One engine of a bundle, as recorded in `manifest["engines"]`."""

    file: str
    role: str
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    #: `BuildProfile.as_manifest()` of the profile the engine was built with.
    profile: dict[str, Any]
    #: sha256 of the bundle's ONNX graph the engine was built from (before any FP16 conversion).
    onnx_sha256: str
    #: ISO 8601 UTC time of the build.
    built: str
    build_seconds: float = 0.0
    typing: str = "weak"

    def as_manifest(self) -> dict[str, Any]:
        """The record as stored in the manifest (a JSON object)."""
        return {
            "file": self.file,
            "role": self.role,
            "precision": self.precision,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "profile": dict(self.profile),
            "onnx_sha256": self.onnx_sha256,
            "built": self.built,
            "build_seconds": round(self.build_seconds, 3),
            "typing": self.typing,
        }

    @property
    def build_profile(self) -> BuildProfile:
        """The recorded profile as a `BuildProfile` (for its shape ranges)."""
        return profile_from_manifest(self.profile)

    def covers(self, batch: int, height: int, width: int) -> bool:
        """Whether inputs of this batch, height and width lie inside the engine's optimisation profile."""
        return self.build_profile.covers(batch, height, width)


def engine_file(role: str, precision: str) -> str:
    """The file name of an engine inside the bundle: `{role}.{precision}.engine`."""
    return f"{role}.{precision}.engine"


def new_record(
    role: str,
    precision: str,
    machine: Machine,
    profile: BuildProfile,
    onnx_sha256: str,
    build_seconds: float,
    typing: str = "weak",
    built: datetime | None = None,
) -> EngineRecord:
    """The record of an engine just built on `machine` from the graph whose sha256 is `onnx_sha256`."""
    when = (built or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    record = EngineRecord(
        file=engine_file(role, precision),
        role=role,
        precision=precision,
        tensorrt_version=machine.tensorrt_version,
        gpu_name=machine.gpu_name,
        compute_capability=machine.compute_capability,
        profile=profile.as_manifest(),
        onnx_sha256=onnx_sha256,
        built=when,
        build_seconds=build_seconds,
        typing=typing,
    )
    return record_from_manifest(record.as_manifest())  # one validation path for new and stored records


def record_from_manifest(entry: Any) -> EngineRecord:
    """Read and validate one `manifest["engines"]` entry."""
    if not isinstance(entry, Mapping):
        raise EngineRecordError(f"engine entry {_shown(entry)} is not an object")
    file = entry.get("file", "?")
    label = f"engine entry {file if isinstance(file, str) and file.isprintable() else _shown(file)}"
    absent = [key for key in _FIELDS if key not in entry]
    if absent:
        raise EngineRecordError(f"{label}: lacks {', '.join(absent)}")
    texts = [key for key in _TEXT_FIELDS if not (isinstance(entry[key], str) and entry[key].isprintable())]
    if texts:
        raise EngineRecordError(f"{label}: {', '.join(texts)} not one-line text")
    seconds = entry.get("build_seconds", 0.0)
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise EngineRecordError(f"{label}: build_seconds is not a number")
    if entry["role"] not in ROLES:
        raise EngineRecordError(f"{label}: role {entry['role']!r} is not one of {', '.join(ROLES)}")
    if entry["precision"] not in ENGINE_PRECISIONS:
        raise EngineRecordError(
            f"{label}: precision {entry['precision']!r} is not one of {', '.join(ENGINE_PRECISIONS)}"
        )
    typing = entry.get("typing", "weak")
    if typing not in TYPINGS:
        raise EngineRecordError(f"{label}: typing {typing!r} is not one of {', '.join(TYPINGS)}")
    if not isinstance(entry["profile"], Mapping):
        raise EngineRecordError(f"{label}: profile is not an object")
    name = entry["profile"].get("name")
    if name is not None and not (isinstance(name, str) and name.isprintable()):
        raise EngineRecordError(f"{label}: profile name is not one-line text")
    try:
        profile_from_manifest(entry["profile"])
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise EngineRecordError(f"{label}: unreadable profile ({(str(error).splitlines() or [''])[0][:80]})") from None
    return EngineRecord(
        file=str(entry["file"]),
        role=str(entry["role"]),
        precision=str(entry["precision"]),
        tensorrt_version=str(entry["tensorrt_version"]),
        gpu_name=str(entry["gpu_name"]),
        compute_capability=str(entry["compute_capability"]),
        profile=dict(entry["profile"]),
        onnx_sha256=str(entry["onnx_sha256"]),
        built=str(entry["built"]),
        build_seconds=float(entry.get("build_seconds", 0.0)),
        typing=str(typing),
    )


def _shown(value: object) -> str:
    """A value as messages show it: its repr, one line, cut short when long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def profile_from_manifest(entry: Mapping[str, Any]) -> BuildProfile:
    """The `BuildProfile` recorded by `BuildProfile.as_manifest()`."""
    axes = {}
    for axis in AXES:
        values = [int(entry[axis][key]) for key in ("min", "opt", "max")]
        if not 1 <= values[0] <= values[1] <= values[2]:
            raise ValueError(f"{axis} needs 1 <= min <= opt <= max, got {values}")
        axes[axis] = AxisRange(*values)
    return BuildProfile(
        name=str(entry["name"]),
        precision=str(entry["precision"]),
        axes=axes,
        workspace_mib=int(entry.get("workspace_mib", 2048)),
        builder_optimization_level=int(entry.get("builder_optimization_level", 3)),
    )


def find_engine(manifest: Mapping[str, Any], role: str, precision: str) -> EngineRecord | None:
    """The manifest's engine for (role, precision), or None when none was built."""
    for entry in manifest.get("engines", []):
        if isinstance(entry, Mapping) and entry.get("role") == role and entry.get("precision") == precision:
            return record_from_manifest(entry)
    return None


def with_engine(manifest: Mapping[str, Any], record: EngineRecord) -> dict[str, Any]:
    """A copy of the manifest whose `engines` holds `record`, replacing any engine of the same role and precision."""
    kept = [
        entry
        for entry in manifest.get("engines", [])
        if not (
            isinstance(entry, Mapping)
            and (entry.get("role"), entry.get("precision")) == (record.role, record.precision)
        )
    ]
    engines = sorted(
        [*kept, record.as_manifest()], key=lambda entry: (str(entry.get("role")), str(entry.get("precision")))
    )
    return {**manifest, "engines": engines}


def release(version: str) -> tuple[int, ...] | None:
    """major.minor.patch of a TensorRT version string ("10.3.0.30" -> (10, 3, 0)); None when it is not one."""
    match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", version)
    if match is None:
        return None
    return (int(match[1]), int(match[2]), int(match[3] or 0))


def same_release(built_with: str, running: str) -> bool:
    """Whether two TensorRT versions share major.minor.patch (the build number may differ)."""
    a, b = release(built_with), release(running)
    return a == b if a is not None and b is not None else built_with.strip() == running.strip()


def rebuild_hint(bundle: str, precision: str, profile_name: str) -> str:
    """How to rebuild an engine: the export command, or `--rebuild` on the deblur command."""
    return (
        f"rebuild it here: python -m export.tensorrt {bundle} --precision {precision} "
        f"--profile configs/build/{profile_name}.yaml (or pass --rebuild to python -m runtime.deblur)"
    )


def mismatch_reason(record: EngineRecord, machine: Machine, onnx_sha256: str, bundle: str) -> str | None:
    """None when the engine can run on `machine` for the bundle's current graph; else one line saying why not.

    Checked: the exact TensorRT release (major.minor.patch), the GPU model, its compute capability, and that
    the ONNX graph is the one the engine was built from.
    """
    problems = []
    if not same_release(record.tensorrt_version, machine.tensorrt_version):
        problems.append(
            f"built with TensorRT {record.tensorrt_version}, this machine has {machine.tensorrt_version} "
            "(engines run only on the TensorRT release that built them)"
        )
    if record.compute_capability != machine.compute_capability:
        problems.append(
            f"built for compute capability {record.compute_capability} ({record.gpu_name}), "
            f"this GPU is {machine.compute_capability} ({machine.gpu_name})"
        )
    elif record.gpu_name != machine.gpu_name:
        problems.append(f"built on GPU {record.gpu_name}, this GPU is {machine.gpu_name}")
    if record.onnx_sha256 != onnx_sha256:
        problems.append(f"built from another {record.role} graph (its ONNX sha256 differs from the bundle's)")
    if not problems:
        return None
    hint = rebuild_hint(bundle, record.precision, str(record.profile.get("name", "PROFILE")))
    return f"{bundle}/{record.file}: " + "; ".join(problems) + f"; {hint}"


def missing_reason(bundle: str, role: str, precision: str) -> str:
    """One line for a bundle that has no engine for (role, precision)."""
    return (
        f"{bundle}: no {precision} TensorRT engine for the {role} graph; build one: python -m export.tensorrt "
        f"{bundle} --precision {precision} --profile configs/build/PROFILE.yaml (or pass --rebuild to "
        "python -m runtime.deblur)"
    )


def source_graph(manifest: Mapping[str, Any], role: str, precision: str = "fp32", typing: str = "weak") -> str:
    """The ONNX file an engine of `role` at `precision` on a network of `typing` is built from: the variant the
    precision table names (`precisions.engine_source`; roles without one, like the sequence graph in the INT8
    variant, take the FP32 graph), else the FP32 graph."""
    variant = manifest.get("precisions", {}).get(engine_source(precision, typing) or "", {})
    return str(variant.get("graphs", {}).get(role, manifest["graphs"][role]["file"]))


def graph_sha256(manifest: Mapping[str, Any], role: str, precision: str = "fp32", typing: str = "weak") -> str:
    """The sha256 the manifest records for the ONNX graph an engine of `role` at `precision` is built from."""
    return str(manifest["files"][source_graph(manifest, role, precision, typing)]["sha256"])


def check_engine(
    manifest: Mapping[str, Any], role: str, precision: str, machine: Machine, bundle: str
) -> tuple[EngineRecord | None, str | None]:
    """The engine for (role, precision) and None when it can run here, else (record or None, the reason)."""
    try:
        record = find_engine(manifest, role, precision)
    except EngineRecordError as error:
        return None, f"{bundle}: {error}"
    if record is None:
        return None, missing_reason(bundle, role, precision)
    return record, mismatch_reason(record, machine, graph_sha256(manifest, role, precision, record.typing), bundle)


def axis_sizes(graph_inputs: Sequence[Mapping[str, Any]], shapes: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """batch/height/width of concrete input shapes, read through the manifest's symbolic input dims.

    Raises ValueError when an input is missing, has the wrong rank, or two inputs disagree on an axis.
    """
    sizes: dict[str, int] = {}
    for value in graph_inputs:
        name, dims = value["name"], value["shape"]
        if name not in shapes:
            raise ValueError(f"no shape given for input {name}")
        shape = tuple(shapes[name])
        if len(shape) != len(dims):
            raise ValueError(f"input {name} has shape {shape}, expected {len(dims)} dims {dims}")
        for dim, size in zip(dims, shape, strict=True):
            if isinstance(dim, str):
                if sizes.setdefault(dim, int(size)) != size:
                    raise ValueError(f"input {name} has {dim} {size}, another input has {sizes[dim]}")
            elif dim and dim != size:
                raise ValueError(f"input {name} has shape {shape}, expected {dims}")
    return sizes


def outside_reason(record: EngineRecord, sizes: Mapping[str, int], bundle: str) -> str | None:
    """None when these batch/height/width sizes lie inside the engine's profile, else one line saying so."""
    profile = record.build_profile
    outside = [
        f"{axis} {sizes[axis]} not in {profile.axes[axis].minimum}..{profile.axes[axis].maximum}"
        for axis in AXES
        if axis in sizes and not profile.axes[axis].minimum <= sizes[axis] <= profile.axes[axis].maximum
    ]
    if not outside:
        return None
    largest = min(profile.axes["height"].maximum, profile.axes["width"].maximum)
    remedy = (
        f"run the trajectory net on a shrunk copy (--estimation-side {largest} or less)"
        if record.role == "trajectory"
        else f"resize or tile the input (--tile-side {largest} or less)"
    )
    return (
        f"{bundle}/{record.file}: input outside the engine's profile {profile.name} ({', '.join(outside)}); "
        f"{remedy}, or build with a profile that covers it (python -m export.tensorrt {bundle} "
        f"--precision {record.precision} --profile configs/build/NAME.yaml)"
    )
