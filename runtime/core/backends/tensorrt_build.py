"""Build TensorRT engines into a bundle, one per graph, and record them in its manifest.

    python -m export.tensorrt BUNDLE --precision fp32|fp16 --profile configs/build/NAME.yaml
                              [--roles trajectory,restoration,sequence]

Each graph is parsed with TensorRT's ONNX parser and built with one optimisation profile (the build profile's
min/opt/max batch, height and width), the profile's workspace and builder optimisation level, and a timing cache
kept in the bundle (`tensorrt-cache/`, per TensorRT release and GPU). Engines land as `{role}.{precision}.engine`
(written to a temporary name first, renamed when every graph has built), and the manifest gets one record per
engine (`runtime.core.engines`) and a refreshed sha256 table, which the runner checks each engine against.

The timing cache is the builder's own and stays out of the sha256 table: it records how fast each kernel ran, so
it steers which of several implementations of a layer the builder picks, never what the engine computes; TensorRT
refuses one from another release or GPU (the builder then starts an empty one). Only the builder reads it
(`python -m export.tensorrt`, `runtime.deblur --rebuild`); no engine run does.

FP16 keeps the geometry in FP32: every GridSample and everything upstream of its grid input (the sampling
positions, computed from the trajectory, the intrinsics and the image size only). FP16 grid coordinates step by
~0.5 px at 1920 wide. With TensorRT 8.6/10 that is builder flag FP16 plus FP32 constraints on those layers;
TensorRT 11 has no FP16 flag (networks are strongly typed), so its FP16 engines are parsed from the bundle's
`fp16` variant, the mixed-precision graphs `python -m calibration.fp16 BUNDLE` adds beforehand. TF32 is switched
off: it would round the geometry's matrix products to 10 mantissa bits.

The builder runs on the device, beside the runner (`tensorrt`): the runtime calls `rebuild_stale` for
`--rebuild`, and `python -m export.tensorrt` is a front over `main`. TensorRT and onnx are imported only when used.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.core import engines
from runtime.core.backends import tensorrt as runner
from runtime.core.backends.base import BackendError
from runtime.core.backends.fp32_island import GraphNode, geometry_island
from runtime.core.bundle import Bundle, BundleError, load_bundle, write_manifest
from runtime.core.precisions import ENGINE_PRECISIONS, FP32_ONLY_ROLES, engine_source, variant_command
from runtime.core.profiles import BuildProfile, ProfileError, ShapeRange, load_build_profile

if TYPE_CHECKING:
    import tensorrt as trt

#: Directory inside the bundle for TensorRT's timing caches (subdirectories stay out of the sha256 table).
CACHE_DIRECTORY = "tensorrt-cache"


class BuildError(RuntimeError):
    """An engine that cannot be built; one line saying which and why."""


def tensorrt_nodes(network: trt.INetworkDefinition) -> list[GraphNode]:
    """The layers of a TensorRT network as `GraphNode`s (GridSample and Shape layers named like ONNX ops)."""
    import tensorrt as trt

    kinds = {trt.LayerType.GRID_SAMPLE: "GridSample", trt.LayerType.SHAPE: "Shape"}
    nodes = []
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        inputs = [layer.get_input(j) for j in range(layer.num_inputs)]
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        nodes.append(
            GraphNode(
                name=layer.name,
                kind=kinds.get(layer.type, str(layer.type)),
                inputs=tuple(tensor.name if tensor is not None else "" for tensor in inputs),
                outputs=tuple(tensor.name if tensor is not None else "" for tensor in outputs),
            )
        )
    return nodes


def pin_geometry_fp32(network: trt.INetworkDefinition) -> int:
    """Constrain the geometry island's floating-point layers to FP32 (precision and output types); their count.

    Layers computing integers (shapes, indices) are left alone: a precision constraint means nothing to them.
    """
    import tensorrt as trt

    pinned = 0
    for index in sorted(geometry_island(tensorrt_nodes(network))):
        layer = network.get_layer(index)
        floats = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype == trt.float32]
        if not floats:
            continue
        layer.precision = trt.float32
        for j in floats:
            layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned


# --- Pure helpers: shapes, roles, names. -------------------------------------------------------------------------


def optimisation_shapes(manifest: Mapping[str, Any], role: str, profile: BuildProfile) -> dict[str, ShapeRange]:
    """min/opt/max shape of every input of one graph: the optimisation profile the engine is built with."""
    minimum_side = int(manifest.get("min_side", 1))
    for axis in ("height", "width"):
        if profile.axes[axis].minimum < minimum_side:
            raise BuildError(
                f"profile {profile.name}: {axis} min {profile.axes[axis].minimum} is below the bundle's "
                f"min_side {minimum_side} (the trajectory net pools five times)"
            )
    try:
        return profile.input_shapes(manifest["graphs"][role]["inputs"])
    except ProfileError as error:
        raise BuildError(str(error)) from None


def parse_roles(roles: str | Iterable[str] | None) -> list[str]:
    """The graph roles to build, in bundle order: all by default, or a comma-separated list / iterable."""
    if roles is None:
        return list(engines.ROLES)
    names = [name.strip() for name in (roles.split(",") if isinstance(roles, str) else roles) if name.strip()]
    unknown = [name for name in names if name not in engines.ROLES]
    if unknown or not names:
        raise BuildError(f"unknown role {', '.join(unknown) or '(none)'}: choose from {', '.join(engines.ROLES)}")
    return [role for role in engines.ROLES if role in names]


def timing_cache_path(bundle: Path, machine: engines.Machine) -> Path:
    """Where the timing cache for this TensorRT release and GPU lives inside the bundle."""
    gpu = "".join(char if char.isalnum() else "-" for char in machine.gpu_name).strip("-").lower() or "gpu"
    return bundle / CACHE_DIRECTORY / f"timing-trt{machine.tensorrt_version}-{gpu}-sm{machine.compute_capability}.cache"


# --- Building. ---------------------------------------------------------------------------------------------------


def build_engines(
    bundle_path: str | Path,
    profile: BuildProfile | str | Path,
    precision: str | None = None,
    roles: str | Iterable[str] | None = None,
    log: Callable[[str], object] = print,
) -> list[engines.EngineRecord]:
    """Build engines for `roles` (default: every graph the bundle has that runs at `precision`) at `precision`
    (default: the profile's) into the bundle.

    Raises BundleError, ProfileError or BuildError with one line; the bundle is unchanged unless every engine
    built.
    """
    bundle = load_bundle(bundle_path)
    build_profile = profile if isinstance(profile, BuildProfile) else load_build_profile(profile)
    precision = precision or build_profile.precision
    if precision not in ENGINE_PRECISIONS:
        raise BuildError(f"precision {precision!r} is not one of {', '.join(ENGINE_PRECISIONS)}")
    build_profile = dataclasses.replace(build_profile, precision=precision)  # recorded as built
    wanted = parse_roles(roles)
    if roles is None:
        wanted = [role for role in wanted if role in bundle.manifest["graphs"]]
        wanted = [role for role in wanted if precision == "fp32" or role not in FP32_ONLY_ROLES]
    reduced = [role for role in wanted if precision != "fp32" and role in FP32_ONLY_ROLES]
    if reduced:
        raise BuildError(f"the {', '.join(reduced)} graph runs in FP32 only; build it with --precision fp32")
    if len({engine_source(precision, typing) for typing in engines.TYPINGS}) == 1:
        check_source_variant(bundle, precision, engines.TYPINGS[0])  # the same on every TensorRT: say so first
    shapes = {role: optimisation_shapes(bundle.manifest, role, build_profile) for role in wanted}
    try:
        runner.require_tensorrt()
        runner.import_cudart()
        machine = runner.current_machine()
    except BackendError as error:
        raise BuildError(f"cannot build TensorRT engines here: {error}") from None
    typing = network_typing()
    check_source_variant(bundle, precision, typing)
    cache = timing_cache_path(bundle.path, machine) if build_profile.timing_cache else None
    built: list[tuple[Path, engines.EngineRecord]] = []
    try:
        for role in wanted:
            started = time.perf_counter()
            temporary = _build_one(bundle, role, precision, typing, build_profile, shapes[role], cache, log)
            seconds = time.perf_counter() - started
            record = engines.new_record(
                role,
                precision,
                machine,
                build_profile,
                engines.graph_sha256(bundle.manifest, role, precision, typing),
                seconds,
                typing,
            )
            built.append((temporary, record))
            size = temporary.stat().st_size / 1e6
            log(f"{role}: {precision} engine built in {seconds:.1f} s, {size:.1f} MB ({record.file})")
        manifest = dict(bundle.manifest)
        for temporary, record in built:
            os.replace(temporary, bundle.path / record.file)
            manifest = engines.with_engine(manifest, record)
        write_manifest(bundle.path, manifest)
    finally:
        for temporary, _ in built:
            temporary.unlink(missing_ok=True)
    log(
        f"{bundle.path}: manifest updated with {len(built)} engine(s) for TensorRT {machine.tensorrt_version} on "
        f"{machine.gpu_name} (compute capability {machine.compute_capability})"
    )
    return [record for _, record in built]


def network_typing() -> str:
    """ "weak" where TensorRT has an FP16 builder flag (8.6, 10), "strong" where networks are always strongly typed
    (11)."""
    import tensorrt as trt

    return "weak" if hasattr(trt.BuilderFlag, "FP16") else "strong"


def check_source_variant(bundle: Bundle, precision: str, typing: str) -> None:
    """Refuse to build when the variant engines of `precision` are parsed from is missing or failed its gate."""
    variant = engine_source(precision, typing)
    if variant is None:
        return
    if variant not in bundle.precisions:
        raise BuildError(
            f"{bundle.path}: no {variant} graphs to build {precision} engines from; first run "
            f"{variant_command(variant, str(bundle.path))}"
        )
    failure = bundle.gate_failure(variant)
    if failure is not None:
        raise BuildError(f"{failure}; recalibrate (--keep-float) before building engines from them")


def rebuild_stale(
    bundle: Bundle,
    roles: list[str],
    precision: str,
    profile: BuildProfile | None = None,
    log: Callable[[str], object] = print,
) -> Bundle:
    """Build the engines of `roles` that are missing or were built for another TensorRT, GPU or graph.

    The profile is `profile`, else the one recorded with the stale engine; a missing engine needs `profile`.
    Returns the re-read bundle (its manifest lists the new engines); unchanged when every engine fits.
    """
    machine = runner.current_machine()
    where = str(bundle.path)
    stale: dict[str, BuildProfile] = {}
    for role in roles:
        record, reason = engines.check_engine(bundle.manifest, role, precision, machine, where)
        if reason is None:
            continue
        if profile is not None:
            stale[role] = profile
        elif record is not None:
            stale[role] = record.build_profile
        else:
            raise BackendError(f"{reason}; --rebuild needs --profile for an engine that was never built")
    if not stale:
        return bundle
    for role, role_profile in stale.items():
        log(
            f"{where}: rebuilding the {precision} {role} engine for TensorRT {machine.tensorrt_version} on "
            f"{machine.gpu_name} (profile {role_profile.name})"
        )
        try:
            build_engines(bundle.path, role_profile, precision, [role], log)
        except BuildError as error:
            raise BackendError(str(error)) from None
    return load_bundle(bundle.path)


def _build_one(
    bundle: Bundle,
    role: str,
    precision: str,
    typing: str,
    profile: BuildProfile,
    shapes: dict[str, ShapeRange],
    cache: Path | None,
    log: Callable[[str], object],
) -> Path:
    """Parse, configure and build one graph; the serialized engine is written to a hidden temporary file."""
    import tensorrt as trt

    trt_logger = runner.logger()
    weak_fp16 = typing == "weak"
    strongly_typed = precision in ("fp16", "int8") and not weak_fp16
    onnx_path = bundle.path / engines.source_graph(bundle.manifest, role, precision, typing)
    try:
        model_bytes = onnx_path.read_bytes()
    except OSError as error:
        raise BuildError(f"{onnx_path}: cannot read the graph ({error.strerror or error})") from None
    builder = trt.Builder(trt_logger)
    network = builder.create_network(_network_flags(strongly_typed))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(model_bytes, str(onnx_path)):  # the path locates any external weights
        raise BuildError(f"{onnx_path}: TensorRT's ONNX parser failed: {_parser_errors(parser, model_bytes)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, profile.workspace_mib << 20)
    if hasattr(config, "builder_optimization_level"):  # TensorRT 8.6+
        config.builder_optimization_level = profile.builder_optimization_level
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    optimisation = builder.create_optimization_profile()
    for name, (low, optimum, high) in shapes.items():
        optimisation.set_shape(name, trt.Dims(list(low)), trt.Dims(list(optimum)), trt.Dims(list(high)))
    config.add_optimization_profile(optimisation)
    if precision in ("fp16", "int8") and weak_fp16:
        _weak_fp16(builder, network, config, role, log)
        if precision == "int8":  # the QDQ layers run INT8 at their calibrated scales; the rest FP16, geometry FP32
            config.set_flag(trt.BuilderFlag.INT8)
            log(f"{role}: INT8 from the calibrated QDQ graph {onnx_path.name}")
    elif strongly_typed and precision == "fp16":
        log(f"{role}: FP16 from the mixed-precision graph {onnx_path.name} (strongly typed; geometry FP32)")
    elif strongly_typed:
        log(f"{role}: INT8 from the calibrated QDQ graph {onnx_path.name} (strongly typed: the rest stays FP32)")
    if cache is not None:
        _load_timing_cache(config, cache, log)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"{onnx_path}: TensorRT could not build the {role} engine (see the TensorRT log above)")
    if cache is not None:
        _write_atomically(cache, memoryview(config.get_timing_cache().serialize()))
    handle, name = tempfile.mkstemp(dir=bundle.path, prefix=f".{role}.{precision}.", suffix=".engine.tmp")
    with os.fdopen(handle, "wb") as file:
        file.write(memoryview(serialized))
    os.chmod(name, 0o644)
    return Path(name)


def _network_flags(strongly_typed: bool) -> int:
    """EXPLICIT_BATCH where it still exists (required by 8.x, ignored by 10, gone in 11); STRONGLY_TYPED if asked."""
    import tensorrt as trt

    flags = 0
    names = ["EXPLICIT_BATCH", "STRONGLY_TYPED"] if strongly_typed else ["EXPLICIT_BATCH"]
    for name in names:
        flag = getattr(trt.NetworkDefinitionCreationFlag, name, None)
        if flag is not None:
            flags |= 1 << int(flag)
    return flags


def _weak_fp16(
    builder: trt.Builder,
    network: trt.INetworkDefinition,
    config: trt.IBuilderConfig,
    role: str,
    log: Callable[[str], object],
) -> None:
    """FP16 by builder flag, with the geometry island constrained to FP32 (TensorRT 8.6 and 10)."""
    import tensorrt as trt

    constraint = getattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS", None) or getattr(
        trt.BuilderFlag, "PREFER_PRECISION_CONSTRAINTS", None
    )
    if constraint is None:
        raise BuildError("this TensorRT has an FP16 flag but no precision constraints: the geometry cannot stay FP32")
    if getattr(builder, "platform_has_fast_fp16", True) is False:
        log(f"{role}: warning: this GPU has no fast FP16; the FP16 engine may be no faster than FP32")
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(constraint)
    pinned = pin_geometry_fp32(network)
    log(f"{role}: FP16, {pinned} geometry layers constrained to FP32")


def _load_timing_cache(config: trt.IBuilderConfig, path: Path, log: Callable[[str], object]) -> None:
    """Give the builder the bundle's timing cache, or an empty one when there is none or it does not fit."""
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, False):
        log(f"{path}: timing cache unusable here, starting a new one")
        config.set_timing_cache(config.create_timing_cache(b""), False)


def _parser_errors(parser: trt.OnnxParser, model_bytes: bytes) -> str:
    """The parser's errors as one line, each with its ONNX node name and op."""
    names: list[str] = []
    messages = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        if hasattr(error, "node_name"):  # TensorRT 10+
            node = f"{error.node_name()} ({error.node_operator()})"
        else:  # 8.6 reports the node's index only: look its name up in the graph
            if not names:
                names = _onnx_node_names(model_bytes)
            number = error.node()
            node = names[number] if 0 <= number < len(names) else f"#{number}"
        messages.append(f"node {node}: {error.desc()}")
    return "; ".join(messages) or "no error reported"


def _onnx_node_names(model_bytes: bytes) -> list[str]:
    """Each node of a serialized graph as "name (op)"; none when the bytes are not ONNX (the parser said why)."""
    import onnx

    try:
        model = onnx.load_from_string(model_bytes)
    except Exception:  # protobuf's DecodeError: the node is then named by its index
        return []
    return [f"{node.name or '<unnamed>'} ({node.op_type})" for node in model.graph.node]


def _write_atomically(path: Path, data: bytes | memoryview) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


# --- Command line. -----------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.tensorrt", description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="bundle directory (from python -m export.onnx)")
    parser.add_argument("--profile", type=Path, required=True, help="build profile YAML (configs/build/NAME.yaml)")
    parser.add_argument("--precision", choices=ENGINE_PRECISIONS, default=None, help="default: the profile's precision")
    parser.add_argument(
        "--roles",
        default=None,
        help=f"comma-separated graphs of {','.join(engines.ROLES)} (default: all the bundle has)",
    )
    args = parser.parse_args(argv)
    try:
        build_engines(args.bundle, args.profile, args.precision, args.roles)
    except (BundleError, ProfileError, BuildError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
