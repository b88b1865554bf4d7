"""`python -m export.triton BUNDLE --out REPO`: a Triton Inference Server model repository from a bundle.

    REPO/trajectory/config.pbtxt, trajectory/1/model.onnx (or model.plan: a TensorRT engine of the bundle)
    REPO/restoration/...,  REPO/sequence/...
    REPO/deblur/config.pbtxt, deblur/1/model.py   8-bit RGB photo in, restored photo and trajectory out (BLS)
    REPO/blur2seq-triton.json                       what was written from what; marks the folder as ours

Each graph becomes one model whose configuration is read off the manifest: names, dtypes, the symbolic axes as
-1, and with `--max-batch N` > 0 the leading `batch` axis as Triton's implicit batch dimension under the dynamic
batcher (requests of one image size are batched together). The graph files are copied byte for byte and checked
against the manifest's sha256. The `deblur` model (`export/triton_model.py`, copied unchanged) runs the
`Deblurrer`'s pipeline on one image through Triton's Business Logic Scripting.

The repository is built in a sibling folder and renamed into place, so a failed run leaves nothing half-written;
`--force` replaces only a folder this command wrote (it holds `blur2seq-triton.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export import triton_model
from runtime.core.bundle import MANIFEST, Bundle, BundleError, file_sha256, load_bundle
from runtime.core.deblurrer import DEFAULT_TILE_SIDE
from runtime.core.engines import (
    EngineRecord,
    EngineRecordError,
    find_engine,
    graph_sha256,
    missing_reason,
    rebuild_hint,
)
from runtime.core.precisions import BY_NAME, ENGINE_PRECISIONS, variant_command

PROG = "python -m export.triton"
#: The graph roles served as models of their own (the refine graph belongs to the runtime's refinement).
GRAPH_MODELS = ("trajectory", "restoration", "sequence")
#: The Python-backend model that runs the pipeline.
PIPELINE_MODEL = "deblur"
#: The file that marks a repository as written by this command.
MARKER = "blur2seq-triton.json"
BACKENDS = ("onnxruntime", "tensorrt")
DEVICES = ("cpu", "gpu")
#: Precisions the onnxruntime backend serves (the bundle's graphs or its variant), and where each runs (the first:
#: the default).
ORT_DEVICES = {"fp32": ("cpu", "gpu"), "fp16": ("gpu",), "int8-cpu": ("cpu",)}
#: `--max-batch` on onnxruntime when not given (on TensorRT: the engines' largest batch).
DEFAULT_MAX_BATCH = 4
BATCH_AXIS = "batch"
#: Manifest dtype names -> Triton's.
DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "bool": "TYPE_BOOL",
}
PLATFORMS = {
    "onnxruntime": {"platform": "onnxruntime_onnx", "backend": "onnxruntime"},
    "tensorrt": {"platform": "tensorrt_plan", "backend": "tensorrt"},
}
MODEL_FILES = {"onnxruntime": "model.onnx", "tensorrt": "model.plan"}
KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}


class TritonExportError(ValueError):
    """A repository that cannot be written; one line naming the file and the problem."""


class Symbol(str):
    """An enum value of the model configuration (`KIND_GPU`, `TYPE_FP32`), written unquoted."""


@dataclass(frozen=True)
class ServeOptions:
    """How the repository serves the bundle: the backend and precision of the graph models, where they run
    (`device`), Triton's `max_batch_size` (0: no implicit batch axis), model instances, and the largest image
    side the `deblur` model restores in one piece."""

    backend: str = "onnxruntime"
    precision: str = "fp32"
    device: str = "cpu"
    max_batch: int = DEFAULT_MAX_BATCH
    instances: int = 1
    max_side: int = DEFAULT_TILE_SIDE


@dataclass(frozen=True)
class Repository:
    """A repository written: where, with which options, and the engines it serves (none on onnxruntime)."""

    path: Path
    options: ServeOptions
    records: dict[str, EngineRecord]


# --- Choices: what the bundle and the options allow. -------------------------------------------------------------


def device_for(backend: str, precision: str, device: str | None) -> str:
    """Where the graph models run: `device`, else GPU for TensorRT engines and for onnxruntime at fp16 (its
    TensorRT accelerator), CPU for onnxruntime at fp32 and int8-cpu; a device the choice cannot run on is refused."""
    allowed = ("gpu",) if backend == "tensorrt" else ORT_DEVICES[precision]
    chosen = device or allowed[0]
    if chosen not in allowed:
        raise TritonExportError(f"--backend {backend} --precision {precision} runs on the {allowed[0].upper()} only")
    return chosen


def check_precision(backend: str, precision: str) -> None:
    """Refuse a precision the backend does not serve."""
    if backend == "tensorrt" and precision not in ENGINE_PRECISIONS:
        raise TritonExportError(
            f"TensorRT engines are built at {', '.join(ENGINE_PRECISIONS)}, not {precision}"
            " (--backend onnxruntime serves the bundle's graph variants)"
        )
    if backend == "onnxruntime" and precision not in ORT_DEVICES:
        raise TritonExportError(
            f"--backend onnxruntime serves {', '.join(ORT_DEVICES)}, not {precision}; "
            "TensorRT engines (fp32, fp16, int8) are served with --backend tensorrt"
        )


def check_variant(bundle: Bundle, precision: str, force_precision: bool = False) -> None:
    """Refuse a graph variant the bundle lacks, or one that failed its accuracy gate unless `force_precision`."""
    if precision != "fp32" and precision not in bundle.precisions:
        held = ", ".join(["fp32", *bundle.precisions])
        raise TritonExportError(
            f"{bundle.path}: no {precision} graphs in this bundle (it has {held}); add them: "
            f"{variant_command(precision, str(bundle.path))}"
        )
    failure = bundle.gate_failure(precision)
    if failure is not None and not force_precision:
        raise TritonExportError(f"{failure}; pass --force-precision to serve them anyway")


def engine_records(bundle: Bundle, precision: str) -> dict[str, EngineRecord]:
    """The bundle's TensorRT engine for each graph model at `precision`, each built from the bundle's graph."""
    records = {}
    for role in GRAPH_MODELS:
        try:
            record = find_engine(bundle.manifest, role, precision)
        except EngineRecordError as error:
            raise TritonExportError(f"{bundle.path / MANIFEST}: {error}") from None
        if record is None:
            raise TritonExportError(missing_reason(str(bundle.path), role, precision))
        if record.onnx_sha256 != graph_sha256(bundle.manifest, role, precision, record.typing):
            hint = rebuild_hint(str(bundle.path), precision, str(record.profile.get("name", "PROFILE")))
            raise TritonExportError(
                f"{bundle.path / record.file}: built from another {role} graph (its ONNX sha256 differs from the "
                f"bundle's); {hint}"
            )
        records[role] = record
    return records


def max_batch_for(records: Mapping[str, EngineRecord], requested: int | None) -> int:
    """Triton's `max_batch_size`: `requested`, else the default; with engines, at most (by default exactly) the
    largest batch every engine's profile takes."""
    if not records:
        return DEFAULT_MAX_BATCH if requested is None else requested
    role, record = min(records.items(), key=lambda item: item[1].build_profile.axes[BATCH_AXIS].maximum)
    largest = record.build_profile.axes[BATCH_AXIS].maximum
    if requested is None:
        return largest
    if requested > largest:
        raise TritonExportError(
            f"{record.file}: the {role} engine takes batches of at most {largest} (profile "
            f"{record.build_profile.name}); pass --max-batch {largest} or less, or build engines with a larger batch"
        )
    return requested


def image_limits(bundle: Bundle, records: Mapping[str, EngineRecord], max_side: int) -> dict[str, int]:
    """The image sizes the `deblur` model takes: the bundle's smallest side, `max_side` on the longer side, and
    with engines the height and width ranges both the trajectory and the restoration engine cover (0: no bound)."""
    min_side = int(bundle.manifest.get("min_side", 32))
    max_height = max_width = 0
    for role in ("trajectory", "restoration"):
        if role not in records:
            continue
        axes = records[role].build_profile.axes
        min_side = max(min_side, axes["height"].minimum, axes["width"].minimum)
        max_height = min(max_height or axes["height"].maximum, axes["height"].maximum)
        max_width = min(max_width or axes["width"].maximum, axes["width"].maximum)
    if max_side < min_side:
        raise TritonExportError(f"--max-side {max_side} is below the smallest image side the models take, {min_side}")
    return {"min_side": min_side, "max_side": max_side, "max_height": max_height, "max_width": max_width}


def check_pipeline_io(bundle: Bundle) -> None:
    """Refuse a bundle whose trajectory or restoration graph lacks an input or output the `deblur` model uses."""
    needs = {
        "trajectory": (triton_model.TRAJECTORY_INPUTS, triton_model.TRAJECTORY_OUTPUT),
        "restoration": (triton_model.RESTORATION_INPUTS, triton_model.RESTORATION_OUTPUT),
    }
    for role, (inputs, output) in needs.items():
        graph = bundle.manifest["graphs"][role]
        names = {value["name"] for value in [*graph["inputs"], *graph["outputs"]]}
        absent = [name for name in (*inputs, output) if name not in names]
        if absent:
            raise TritonExportError(
                f"{bundle.path / MANIFEST}: the {role} graph has no {', '.join(absent)}, which the deblur model uses"
            )


# --- Model configurations (pure: manifest and options in, a config as nested dicts out). -------------------------


def triton_type(dtype: str, label: str) -> Symbol:
    """Triton's data type for a manifest dtype name (`float32` -> `TYPE_FP32`)."""
    if dtype not in DTYPES:
        raise TritonExportError(f"{label}: dtype {dtype!r} has no Triton type (known: {', '.join(DTYPES)})")
    return Symbol(DTYPES[dtype])


def tensor_config(value: Mapping[str, Any], batched: bool, label: str) -> dict[str, Any]:
    """One input or output of a graph: symbolic axes as -1; when `batched`, the leading batch axis left to Triton
    (a tensor of the batch axis alone becomes `dims: [1]` reshaped to `[]`, since dims may not be empty)."""
    shape = list(value["shape"])
    if batched:
        if not shape or shape[0] != BATCH_AXIS:
            raise TritonExportError(f"{label} {value['name']}: no leading batch axis; pass --max-batch 0")
        shape = shape[1:]
    entry: dict[str, Any] = {
        "name": value["name"],
        "data_type": triton_type(value["dtype"], f"{label} {value['name']}"),
        "dims": [-1 if isinstance(dim, str) else int(dim) for dim in shape] or [1],
    }
    if not shape:
        entry["reshape"] = {"shape": []}
    return entry


def graph_config(manifest: Mapping[str, Any], role: str, options: ServeOptions) -> dict[str, Any]:
    """The model configuration of one graph served on `options.backend`."""
    graph = manifest["graphs"][role]
    batched = options.max_batch > 0
    label = f"{MANIFEST}: graph {role}"
    config: dict[str, Any] = {
        "name": role,
        **PLATFORMS[options.backend],
        "max_batch_size": options.max_batch,
        "input": [tensor_config(value, batched, f"{label} input") for value in graph["inputs"]],
        "output": [tensor_config(value, batched, f"{label} output") for value in graph["outputs"]],
        "instance_group": [{"count": options.instances, "kind": Symbol(KINDS[options.device])}],
    }
    if batched:
        config["dynamic_batching"] = {}
    if options.backend == "onnxruntime" and options.precision == "fp16":
        config["optimization"] = tensorrt_accelerator("FP16")
    return config


def tensorrt_accelerator(precision_mode: str) -> dict[str, Any]:
    """The `optimization` block that runs an ONNX model through onnxruntime's TensorRT execution provider."""
    accelerator = {"name": "tensorrt", "parameters": [{"key": "precision_mode", "value": precision_mode}]}
    return {"execution_accelerators": {"gpu_execution_accelerator": [accelerator]}}


def deblur_config(bundle: Bundle, options: ServeOptions, limits: Mapping[str, int]) -> dict[str, Any]:
    """The `deblur` model's configuration: one image per request (sizes differ, so Triton does not batch them),
    its BLS targets and the bundle's values as parameters for `triton_model.settings_from_config`."""
    parameters = {
        "trajectory_model": "trajectory",
        "restoration_model": "restoration",
        "batched": "true" if options.max_batch > 0 else "false",
        "n_positions": str(bundle.n_positions),
        **{key: str(value) for key, value in limits.items()},
        "sigma": repr(bundle.default_sigma),
    }
    uint8, fp32 = Symbol("TYPE_UINT8"), Symbol("TYPE_FP32")
    return {
        "name": PIPELINE_MODEL,
        "backend": "python",
        "max_batch_size": 0,
        "input": [
            {"name": triton_model.IMAGE_INPUT, "data_type": uint8, "dims": [-1, -1, 3]},
            {"name": triton_model.FOCAL_LENGTH_INPUT, "data_type": fp32, "dims": [1], "optional": True},
        ],
        "output": [
            {"name": triton_model.RESTORED_OUTPUT, "data_type": uint8, "dims": [-1, -1, 3]},
            {"name": triton_model.TRAJECTORY_RESULT, "data_type": fp32, "dims": [bundle.n_positions, 3]},
        ],
        "instance_group": [{"count": options.instances, "kind": Symbol("KIND_CPU")}],
        "parameters": [{"key": key, "value": {"string_value": value}} for key, value in parameters.items()],
    }


def render(message: Mapping[str, Any], indent: int = 0) -> str:
    """A configuration as protobuf text (`config.pbtxt`): dicts are messages, lists of dicts repeated messages
    (maps too: entries of `key` and `value`), other lists repeated scalars, `Symbol`s enum values."""
    pad = "  " * indent
    lines = []
    for field, value in message.items():
        if isinstance(value, Mapping):
            body = render(value, indent + 1)
            lines.append(f"{pad}{field} {{\n{body}\n{pad}}}" if body else f"{pad}{field} {{ }}")
        elif isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
            messages = [f"{pad}  {{\n{render(item, indent + 2)}\n{pad}  }}" for item in value]
            lines.append(f"{pad}{field} [\n" + ",\n".join(messages) + f"\n{pad}]")
        elif isinstance(value, list):
            scalars = ", ".join(_scalar(item) for item in value)
            lines.append(f"{pad}{field}: [ {scalars} ]" if scalars else f"{pad}{field}: [ ]")
        else:
            lines.append(f"{pad}{field}: {_scalar(value)}")
    return "\n".join(lines)


def _scalar(value: Any) -> str:
    if isinstance(value, Symbol):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


# --- Writing the repository. -------------------------------------------------------------------------------------


def model_source(bundle: Bundle, role: str, options: ServeOptions, records: Mapping[str, EngineRecord]) -> Path:
    """The bundle file a graph model serves: its engine at the precision, or its ONNX graph (or variant)."""
    if options.backend == "tensorrt":
        return bundle.path / records[role].file
    return bundle.graph_path(role, options.precision)


def manifest_sha256(bundle: Bundle, source: Path) -> str:
    """The sha256 the manifest records for a file of the bundle."""
    entry = bundle.manifest.get("files", {}).get(source.name)
    if entry is None or not source.is_file():
        raise TritonExportError(f"{source}: missing, or not listed in the bundle's {MANIFEST}")
    return str(entry["sha256"])


def copy_verified(source: Path, target: Path, sha256: str) -> None:
    """Copy a bundle file into the repository and prove the copy is the file the manifest describes."""
    shutil.copyfile(source, target)
    if file_sha256(target) != sha256:
        raise TritonExportError(f"{target}: the copy of {source} differs from the sha256 in the bundle's {MANIFEST}")


def is_ours(path: Path) -> bool:
    """Whether `path` is a model repository this command wrote (a folder holding our marker file)."""
    marker = path / MARKER
    if path.is_symlink() or not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("written_by") == PROG
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False


def check_target(out: Path, force: bool) -> None:
    """Refuse to write over anything but, with `force`, a repository this command wrote."""
    if not out.exists() and not out.is_symlink():
        return
    if not is_ours(out):
        raise TritonExportError(
            f"{out}: exists and is not a model repository written by {PROG} (it has no {MARKER}); choose another --out"
        )
    if not force:
        raise TritonExportError(f"{out}: exists; pass --force to replace it")


def fill_repository(
    directory: Path,
    bundle: Bundle,
    options: ServeOptions,
    records: Mapping[str, EngineRecord],
    limits: Mapping[str, int],
) -> dict[str, Any]:
    """Write every model into `directory` (an empty folder); returns what was written, for the marker."""
    models: dict[str, Any] = {}
    for role in GRAPH_MODELS:
        source = model_source(bundle, role, options, records)
        sha256 = manifest_sha256(bundle, source)
        version = directory / role / "1"
        version.mkdir(parents=True)
        copy_verified(source, version / MODEL_FILES[options.backend], sha256)
        (directory / role / "config.pbtxt").write_text(render(graph_config(bundle.manifest, role, options)) + "\n")
        models[role] = {"file": f"1/{MODEL_FILES[options.backend]}", "source": source.name, "sha256": sha256}
    version = directory / PIPELINE_MODEL / "1"
    version.mkdir(parents=True)
    shutil.copyfile(Path(triton_model.__file__), version / "model.py")
    (directory / PIPELINE_MODEL / "config.pbtxt").write_text(render(deblur_config(bundle, options, limits)) + "\n")
    models[PIPELINE_MODEL] = {"file": "1/model.py", "calls": ["trajectory", "restoration"]}
    return models


def marker(
    bundle: Bundle, options: ServeOptions, models: Mapping[str, Any], records: Mapping[str, EngineRecord]
) -> dict[str, Any]:
    """The marker file's content: the command, the bundle, the options and every model's source."""
    return {
        "written_by": PROG,
        "bundle": str(bundle.path.resolve()),
        "bundle_created": bundle.manifest.get("created"),
        "options": {
            "backend": options.backend,
            "precision": options.precision,
            "device": options.device,
            "max_batch": options.max_batch,
            "instances": options.instances,
            "max_side": options.max_side,
        },
        "models": dict(models),
        "engines": {
            role: {
                "file": record.file,
                "tensorrt_version": record.tensorrt_version,
                "gpu_name": record.gpu_name,
                "compute_capability": record.compute_capability,
            }
            for role, record in records.items()
        },
    }


def move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished repository to `out`; an existing `out` is swapped out first and removed after (put
    back if the rename fails)."""
    if not out.exists():
        staging.rename(out)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    out.rename(retired / out.name)
    try:
        staging.rename(out)
    except OSError:
        (retired / out.name).rename(out)
        retired.rmdir()
        raise
    shutil.rmtree(retired, ignore_errors=True)


def write_repository(
    bundle: Bundle,
    out: Path,
    options: ServeOptions,
    records: Mapping[str, EngineRecord] | None = None,
    force: bool = False,
) -> Path:
    """Write the repository in a sibling folder of `out` and rename it into place (see `check_target`)."""
    records = dict(records or {})
    check_target(out, force)
    limits = image_limits(bundle, records, options.max_side)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as error:
        raise TritonExportError(f"{out}: cannot write there ({error.strerror or error})") from None
    try:
        models = fill_repository(staging, bundle, options, records, limits)
        (staging / MARKER).write_text(json.dumps(marker(bundle, options, models, records), indent=2) + "\n")
        os.chmod(staging, 0o755)
        move_into_place(staging, out)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise TritonExportError(f"{out}: cannot write the repository ({error.strerror or error})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def export_repository(
    bundle_path: str | Path,
    out: str | Path,
    backend: str = "onnxruntime",
    precision: str = "fp32",
    device: str | None = None,
    max_batch: int | None = None,
    instances: int = 1,
    max_side: int = DEFAULT_TILE_SIDE,
    force: bool = False,
    force_precision: bool = False,
) -> Repository:
    """Check the bundle and the choices, then write the repository."""
    if backend not in BACKENDS:
        raise TritonExportError(f"unknown backend {backend!r}: choose {' or '.join(BACKENDS)}")
    if max_batch is not None and max_batch < 0:
        raise TritonExportError(f"--max-batch must be 0 (no batching) or more, got {max_batch}")
    if instances < 1:
        raise TritonExportError(f"--instances must be at least 1, got {instances}")
    check_precision(backend, precision)
    chosen_device = device_for(backend, precision, device)
    bundle = load_bundle(bundle_path)
    check_pipeline_io(bundle)
    if backend == "onnxruntime":
        check_variant(bundle, precision, force_precision)
    records = engine_records(bundle, precision) if backend == "tensorrt" else {}
    options = ServeOptions(backend, precision, chosen_device, max_batch_for(records, max_batch), instances, max_side)
    return Repository(write_repository(bundle, Path(out), options, records, force), options, records)


def summary(repository: Repository) -> list[str]:
    """What the command prints: the models written and, for engines, what Triton must match to load them."""
    out, options, graphs = repository.path, repository.options, ", ".join(GRAPH_MODELS)
    lines = [
        f"wrote {out}: {graphs} ({options.backend} {options.precision}, {KINDS[options.device]}, "
        f"max_batch_size {options.max_batch}) and {PIPELINE_MODEL} (python, BLS)",
    ]
    for record in repository.records.values():
        lines.append(
            f"{record.role}/1/model.plan: built with TensorRT {record.tensorrt_version} on {record.gpu_name} "
            f"(compute capability {record.compute_capability}); serve it with a Triton of that TensorRT on that GPU"
        )
    lines.append(f"serve: tritonserver --model-repository={out.resolve()}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: parse, write, print; returns the exit status (0 written, 2 refused)."""
    parser = argparse.ArgumentParser(prog=PROG, description="Write a Triton Inference Server model repository.")
    parser.add_argument(
        "bundle", type=Path, metavar="BUNDLE", help="bundle directory (written by python -m export.onnx)"
    )
    parser.add_argument("--out", required=True, type=Path, metavar="REPO", help="model repository folder to write")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="onnxruntime",
        help="onnxruntime: the bundle's ONNX graphs; tensorrt: its TensorRT engines at --precision "
        "(python -m export.tensorrt builds them) (default onnxruntime)",
    )
    parser.add_argument(
        "--precision",
        choices=list(BY_NAME),
        default="fp32",
        help="fp32 (default); onnxruntime: fp16 (the bundle's fp16 graphs under TensorRT's FP16 accelerator, GPU) "
        "or int8-cpu (CPU); tensorrt: the engines built at fp32, fp16 or int8",
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        help="where the graph models run (default: gpu for tensorrt and for onnxruntime at fp16, cpu for "
        "onnxruntime at fp32 and int8-cpu; onnxruntime at fp32 on gpu runs CUDA)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        metavar="N",
        help=f"Triton's max_batch_size for the graph models, with dynamic batching of same-size requests; 0: none "
        f"(default {DEFAULT_MAX_BATCH} on onnxruntime, the engines' largest batch on tensorrt)",
    )
    parser.add_argument("--instances", type=int, default=1, metavar="N", help="instances of each model (default 1)")
    parser.add_argument(
        "--max-side",
        type=int,
        default=DEFAULT_TILE_SIDE,
        metavar="PX",
        help=f"largest image side the deblur model restores; larger images are refused (default {DEFAULT_TILE_SIDE}"
        ", the Deblurrer's tile side)",
    )
    parser.add_argument("--force", action="store_true", help=f"replace a repository {PROG} wrote at --out")
    parser.add_argument(
        "--force-precision", action="store_true", help="serve a precision variant that failed its accuracy gate"
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed its message
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        repository = export_repository(
            args.bundle,
            args.out,
            args.backend,
            args.precision,
            args.device,
            args.max_batch,
            args.instances,
            args.max_side,
            args.force,
            args.force_precision,
        )
    except (BundleError, TritonExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(summary(repository)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
