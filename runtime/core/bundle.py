"""The bundle: a directory of ONNX graphs (and engines) described by `manifest.json`; load it and prove it whole.

The export writes bundles, the runtime reads them; this module is the one definition of the manifest both use.
Loading refuses, with one line naming the file and the problem:

- a missing, unreadable, oversized (over 1 MiB) or too deeply nested (over 32 levels) manifest, an unknown schema
  version, and any manifest part of the wrong shape (checked up front, so later code can trust the manifest);
- any name the manifest gives (`files` keys, graph, variant and engine files) that is not a plain file name of the
  bundle folder, or that resolves, after symbolic links, outside it; such names are refused unread;
- a graph, variant or engine file that is not in the `files` table, and a file of that table that is missing;
- an ONNX graph whose external data is outside the bundle or not in the `files` table;
- any file whose size or sha256 differs from the table's (`verify_files=False` skips the sha256 pass of large
  bundles; the other checks always run). Each file is hashed once, however many names point at it.

The `files` table lists the files directly in the bundle folder. Subfolders (`tensorrt-cache/`, `ort-trt-cache/`)
hold TensorRT's timing caches and onnxruntime's engine caches, which their tools write and read themselves; the
runtime never loads a model from them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, TypeGuard

from runtime.core.engines import EngineRecordError, record_from_manifest
from runtime.core.limits import MIN_SIDE_PX, SIGMA, LimitError
from runtime.core.textfiles import nesting

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
#: Graphs every bundle holds, by role; the manifest maps each role to its file, I/O and sha256.
REQUIRED_GRAPHS = ("trajectory", "restoration", "sequence")
#: The largest manifest read, in bytes (the demo bundle's is 6 KB).
MAX_MANIFEST_BYTES = 1 << 20
#: The deepest nesting of objects and lists a manifest may have (the demo bundle's is 6).
MAX_MANIFEST_DEPTH = 32
#: Every ONNX reference to external data names its file under this key, and protobuf stores strings verbatim:
#: a graph file without these bytes refers to no external file, so only graphs holding them are parsed.
_EXTERNAL_DATA_KEY = b"location"
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: sha256 of graph contents searched for `_EXTERNAL_DATA_KEY` in this process -> whether they hold it. A graph
#: whose sha256 the load verifies is then not searched again (its content, and so the answer, is the same).
_SEARCHED: dict[str, bool] = {}
_SEARCHED_MAX = 4096
#: Names longer than this are cut short in messages.
_SHOWN_CHARACTERS = 240


class BundleError(ValueError):
    """A bundle that cannot be used; the message is one line naming the file and the problem."""


@dataclass(frozen=True)
class Bundle:
    """A validated bundle: its directory and its manifest."""

    path: Path
    manifest: dict[str, Any]

    def graph_path(self, role: str, precision: str = "fp32") -> Path:
        """The ONNX file of a graph role ("trajectory", "restoration", ...) at a precision: the FP32 graph, or
        the reduced-precision variant recorded under `manifest["precisions"]` (roles without one stay FP32)."""
        if precision == "fp32":
            return self.path / self.manifest["graphs"][role]["file"]
        variant = self.precisions.get(precision)
        if variant is None:
            known = ", ".join(["fp32", *self.precisions]) or "fp32"
            raise BundleError(f"{self.path}: no {precision} graphs in this bundle (it has {known})")
        return self.path / variant["graphs"].get(role, self.manifest["graphs"][role]["file"])

    def listed_file(self, name: str, entry: str) -> tuple[Path, str]:
        """The path of a file the manifest's `entry` names and the sha256 its `files` table records for it;
        BundleError when the name is not a plain file name of the bundle or the table has no entry for it."""
        if not plain_name(name) or not _inside(Path(os.path.realpath(self.path)), self.path / name):
            raise BundleError(f"{self.path / MANIFEST}: {entry} names {shown(name)}, outside the bundle")
        listed = self.manifest.get("files", {}).get(name)
        if not isinstance(listed, Mapping) or not isinstance(listed.get("sha256"), str):
            where = self.path / MANIFEST
            raise BundleError(f"{where}: {entry} names {shown(name)}, which has no sha256 entry in files")
        return self.path / name, listed["sha256"]

    @property
    def precisions(self) -> dict[str, Any]:
        """Reduced-precision variants (`calibration.int8`): name -> graphs, calibration settings, accuracy gate."""
        return dict(self.manifest.get("precisions", {}))

    def gate_failure(self, precision: str) -> str | None:
        """Why a reduced-precision variant must not run unless forced (it failed its accuracy gate), or None."""
        gate = self.precisions.get(precision, {}).get("gate")
        if precision == "fp32" or gate is None or gate.get("passed"):
            return None
        return f"{self.path}: the {precision} graphs failed their accuracy gate ({gate.get('summary', 'see manifest')})"

    @property
    def default_sigma(self) -> float:
        return float(self.manifest["default_sigma"])

    @property
    def n_positions(self) -> int:
        return int(self.manifest["n_positions"])


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (graphs reach hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type's name when the message is empty."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def shown(value: object) -> str:
    """A name as messages show it: quoted, escaped (one line whatever it holds) and cut short when long."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARACTERS else text[: _SHOWN_CHARACTERS - 3] + "..."


def plain_name(name: object) -> bool:
    """Whether `name` is a plain file name: one path component, printable, neither `.` nor `..`, on any system."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and name.isprintable()
        and PurePosixPath(name).name == name
        and PureWindowsPath(name).name == name
    )


def load_bundle(path: str | Path, verify_files: bool = True) -> Bundle:
    """Read and validate a bundle directory. `verify_files=False` skips the sha256 pass (large bundles); the
    manifest's schema, the confinement of every name it gives, the `files` listing, the files' sizes and the
    graphs' external data are checked always (the graphs are still read once, for external-data references)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory")
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: missing; {path} is not a bundle")
    manifest = read_manifest(manifest_path)
    check_manifest(manifest, manifest_path)
    root = Path(os.path.realpath(path))
    for label, name in named_files(manifest):
        if not plain_name(name) or not _inside(root, path / name):
            raise BundleError(f"{manifest_path}: {label} names {shown(name)}, outside the bundle")
    check_listed(manifest, manifest_path)
    graphs = {name for label, name in named_files(manifest) if label.startswith(("graphs.", "precisions."))}
    external = _verify_files(path, manifest["files"], graphs, verify_files)
    for graph in sorted(external):
        check_external_data(path, root, graph, manifest["files"])
    return Bundle(path, manifest)


# --- The manifest: read, bounded, and checked part by part. -------------------------------------------------------


def read_manifest(manifest_path: Path) -> dict[str, Any]:
    """The manifest's JSON object; BundleError when it is unreadable, larger than `MAX_MANIFEST_BYTES`, nested
    deeper than `MAX_MANIFEST_DEPTH` or not an object."""
    try:
        with manifest_path.open("rb") as file:
            data = file.read(MAX_MANIFEST_BYTES + 1)
    except OSError as error:
        raise BundleError(f"{manifest_path}: unreadable manifest ({error.strerror or error})") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{manifest_path}: larger than {MAX_MANIFEST_BYTES} bytes, the most a manifest may have")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise BundleError(f"{manifest_path}: nested deeper than {MAX_MANIFEST_DEPTH} levels") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise BundleError(f"{manifest_path}: unreadable manifest ({first_line(error)})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path}: not a manifest (a JSON object is expected)")
    if nesting(manifest) > MAX_MANIFEST_DEPTH:
        raise BundleError(f"{manifest_path}: nested deeper than {MAX_MANIFEST_DEPTH} levels")
    return manifest


def check_manifest(manifest: Mapping[str, Any], where: Path) -> None:
    """Refuse, with one BundleError line, a manifest any part of which has the wrong shape or an absurd value."""
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise BundleError(
            f"{where}: unknown schema_version {shown(version)}; this runtime reads version {SCHEMA_VERSION}"
        )
    check_settings(manifest, where)
    check_graphs(manifest.get("graphs"), where)
    check_files(manifest.get("files"), where)
    check_precisions(manifest.get("precisions", {}), where)
    check_engines(manifest.get("engines", []), where)


def check_settings(manifest: Mapping[str, Any], where: Path) -> None:
    """`n_positions` (a positive integer), `default_sigma` (a noise level), `min_side` (when given, within
    `MIN_SIDE_PX`) and `architecture` (when given, objects; the restoration's `n_iter` a positive integer)."""
    n_positions = manifest.get("n_positions")
    if not _is_integer(n_positions) or n_positions < 1:
        raise BundleError(f"{where}: n_positions is missing or not a positive integer")
    sigma = manifest.get("default_sigma")
    if not _is_number(sigma):
        raise BundleError(f"{where}: default_sigma is missing or not a number")
    if "min_side" in manifest and not _is_integer(manifest["min_side"]):
        raise BundleError(f"{where}: min_side is not an integer")
    try:
        SIGMA.check(sigma, f"{where}: default_sigma")
        if "min_side" in manifest:
            MIN_SIDE_PX.check(manifest["min_side"], str(where))
    except LimitError as error:
        raise BundleError(str(error)) from None
    architecture = manifest.get("architecture", {})
    if not isinstance(architecture, dict) or not all(isinstance(net, dict) for net in architecture.values()):
        raise BundleError(f"{where}: architecture is not an object of objects")
    n_iter = architecture.get("restoration", {}).get("n_iter", 1)
    if not _is_integer(n_iter) or n_iter < 1:
        raise BundleError(f"{where}: architecture.restoration.n_iter is not a positive integer")


def check_graphs(graphs: Any, where: Path) -> None:
    """`graphs`: an object with every required role, each an object with a `file` name and `inputs` and
    `outputs` lists of `{name, shape}` (sizes and axis names)."""
    if not isinstance(graphs, dict):
        raise BundleError(f"{where}: graphs is missing or not an object")
    absent = [role for role in REQUIRED_GRAPHS if role not in graphs]
    if absent:
        raise BundleError(f"{where}: lists no {', '.join(absent)} graph")
    for role, entry in graphs.items():
        label = f"graphs.{_key(role)}"
        if not isinstance(entry, dict):
            raise BundleError(f"{where}: {label} is not an object")
        if not isinstance(entry.get("file"), str):
            raise BundleError(f"{where}: {label}.file is missing or not a file name")
        for side in ("inputs", "outputs"):
            values = entry.get(side)
            if not isinstance(values, list):
                raise BundleError(f"{where}: {label}.{side} is missing or not a list")
            for index, value in enumerate(values):
                if not isinstance(value, dict) or not isinstance(value.get("name"), str):
                    raise BundleError(f"{where}: {label}.{side}[{index}] is not an object with a name")
                shape = value.get("shape")
                if not isinstance(shape, list) or not all(_is_dimension(dim) for dim in shape):
                    raise BundleError(f"{where}: {label}.{side}[{index}].shape is not a list of sizes and axis names")


def check_files(files: Any, where: Path) -> None:
    """`files`: an object mapping each name to `{sha256: 64 hex digits, bytes: size (optional)}`."""
    if not isinstance(files, dict):
        raise BundleError(f"{where}: files is missing or not an object")
    for name, entry in files.items():
        label = f"files[{shown(name)}]"
        if not isinstance(entry, dict):
            raise BundleError(f"{where}: {label} is not an object")
        if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
            raise BundleError(f"{where}: {label}.sha256 is missing or not 64 lowercase hex digits")
        size = entry.get("bytes", 0)
        if not _is_integer(size) or size < 0:
            raise BundleError(f"{where}: {label}.bytes is not a size in bytes")


def check_precisions(precisions: Any, where: Path) -> None:
    """`precisions`: an object of variants, each with `graphs` (role -> file name) and, when gated, a `gate`
    object whose `passed` is true or false."""
    if not isinstance(precisions, dict):
        raise BundleError(f"{where}: precisions is not an object")
    for name, variant in precisions.items():
        label = f"precisions.{_key(name)}"
        if not name.isprintable():
            raise BundleError(f"{where}: {label} is not a one-line name")
        if not isinstance(variant, dict):
            raise BundleError(f"{where}: {label} is not an object")
        graphs = variant.get("graphs")
        if not isinstance(graphs, dict) or not all(isinstance(file, str) for file in graphs.values()):
            raise BundleError(f"{where}: {label}.graphs is missing or not an object of file names")
        gate = variant.get("gate")
        if gate is None:
            continue
        if not isinstance(gate, dict):
            raise BundleError(f"{where}: {label}.gate is not an object")
        if not isinstance(gate.get("passed", False), bool) or not isinstance(gate.get("summary", ""), str):
            raise BundleError(f"{where}: {label}.gate has a passed that is not true or false, or a summary not text")


def check_engines(entries: Any, where: Path) -> None:
    """`engines`: a list of engine records (`runtime.core.engines.record_from_manifest`)."""
    if not isinstance(entries, list):
        raise BundleError(f"{where}: engines is not a list")
    for index, entry in enumerate(entries):
        try:
            record_from_manifest(entry)
        except EngineRecordError as error:
            raise BundleError(f"{where}: engines[{index}]: {error}") from None


def named_files(manifest: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(where in the manifest, name) of every file name a checked manifest gives."""
    for name in manifest["files"]:
        yield "files", name
    for role, entry in manifest["graphs"].items():
        yield f"graphs.{_key(role)}.file", entry["file"]
    for precision, variant in manifest.get("precisions", {}).items():
        for role, name in variant["graphs"].items():
            yield f"precisions.{_key(precision)}.graphs.{_key(role)}", name
    for index, entry in enumerate(manifest.get("engines", [])):
        yield f"engines[{index}].file", entry["file"]


def check_listed(manifest: Mapping[str, Any], where: Path) -> None:
    """Refuse a graph, variant or engine file that the `files` table (and so the sha256 pass) does not hold."""
    for label, name in named_files(manifest):
        if label != "files" and name not in manifest["files"]:
            raise BundleError(f"{where}: {label} names {shown(name)}, which has no sha256 entry in files")


# --- The files: present, of the recorded size and sha256, external data inside the bundle. ----------------------


def _verify_files(path: Path, files: Mapping[str, Any], graphs: set[str], verify: bool) -> set[str]:
    """Check every file of the `files` table: a regular file of the recorded sha256 (when `verify`, else of the
    recorded size), each distinct file read once; graphs are searched for external data on the same pass.
    Returns the graphs that may refer to external data."""
    aliases: dict[tuple[int, int], list[str]] = {}
    for name, entry in files.items():
        file = path / name
        try:
            info = os.stat(file)
        except OSError:
            raise BundleError(f"{file}: missing from the bundle (listed in {MANIFEST})") from None
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"{file}: not a regular file (listed in {MANIFEST})")
        if not verify and "bytes" in entry and entry["bytes"] != info.st_size:  # verified files: the sha256 decides
            raise BundleError(
                f"{file}: {info.st_size} bytes, {MANIFEST} says {entry['bytes']}: the file was changed or damaged"
            )
        aliases.setdefault((info.st_dev, info.st_ino), []).append(name)
    external: set[str] = set()
    for names in aliases.values():
        graph = any(name in graphs for name in names)
        known = _SEARCHED.get(files[names[0]]["sha256"]) if verify else None
        search = graph and known is None
        if not verify and not search:
            continue
        digest, found = _read(path / names[0], verify, search)
        for name in names:
            if verify and digest != files[name]["sha256"]:
                raise BundleError(f"{path / name}: sha256 differs from {MANIFEST}: the file was changed or damaged")
        if search and digest is not None:
            if len(_SEARCHED) >= _SEARCHED_MAX:
                _SEARCHED.clear()
            _SEARCHED[digest] = found
        if found or (graph and known):
            external.update(name for name in names if name in graphs)
    return external


def _read(file: Path, digest: bool, search: bool) -> tuple[str | None, bool]:
    """One read of a file: its sha256 (when `digest`) and whether it holds `_EXTERNAL_DATA_KEY` (when `search`)."""
    hashed = hashlib.sha256()
    found = False
    tail = b""
    try:
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                if digest:
                    hashed.update(chunk)
                if search and not found:
                    found = _EXTERNAL_DATA_KEY in tail + chunk[: len(_EXTERNAL_DATA_KEY)] or _EXTERNAL_DATA_KEY in chunk
                    tail = chunk[1 - len(_EXTERNAL_DATA_KEY) :]
    except OSError as error:
        raise BundleError(f"{file}: unreadable ({error.strerror or error})") from None
    return (hashed.hexdigest() if digest else None), found


def check_external_data(path: Path, root: Path, graph: str, files: Mapping[str, Any]) -> None:
    """Refuse a graph whose external data is not a plain file name of the bundle listed in `files` (whose sha256
    the load checks), or which cannot be read as ONNX."""
    import onnx

    file = path / graph
    try:
        model = onnx.load_model(str(file), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError, OSError, onnx's own
        raise BundleError(f"{file}: not a readable ONNX graph ({first_line(error)})") from None
    for location in external_data_locations(model):
        if not plain_name(location) or not _inside(root, path / location):
            raise BundleError(f"{file}: external data names {shown(location)}, outside the bundle")
        if location not in files:
            raise BundleError(f"{file}: external data {shown(location)} has no sha256 entry in {MANIFEST}'s files")


def external_data_locations(model: Any) -> list[str]:
    """The `location` of every tensor of an ONNX model (`onnx.ModelProto`) that names external data: in every
    graph (subgraphs and training graphs too), initializer, sparse initializer, attribute and function."""
    graphs = [model.graph, *(g for info in model.training_info for g in (info.initialization, info.algorithm))]
    attributes = [a for function in model.functions for a in function.attribute_proto]
    attributes += [a for function in model.functions for node in function.node for a in node.attribute]
    tensors: list[Any] = []
    sparse: list[Any] = []
    while graphs or attributes:
        while graphs:
            graph = graphs.pop()
            tensors += graph.initializer
            sparse += graph.sparse_initializer
            for node in graph.node:
                attributes += node.attribute
        while attributes:
            attribute = attributes.pop()
            tensors += attribute.tensors
            sparse += attribute.sparse_tensors
            graphs += attribute.graphs
            if attribute.HasField("t"):
                tensors.append(attribute.t)
            if attribute.HasField("sparse_tensor"):
                sparse.append(attribute.sparse_tensor)
            if attribute.HasField("g"):
                graphs.append(attribute.g)
    tensors += [part for tensor in sparse for part in (tensor.values, tensor.indices)]
    return [entry.value for tensor in tensors for entry in tensor.external_data if entry.key == "location"]


# --- Writing. --------------------------------------------------------------------------------------------------


def files_entry(directory: Path) -> dict[str, dict[str, Any]]:
    """The manifest's `files` table: size and sha256 of every regular file directly in a bundle directory but the
    manifest (symbolic links and hidden files are left out)."""
    return {
        file.name: {"bytes": file.stat().st_size, "sha256": file_sha256(file)}
        for file in sorted(directory.iterdir())
        if file.is_file() and not file.is_symlink() and file.name != MANIFEST and not file.name.startswith(".")
    }


def write_manifest(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Refresh the `files` table from the directory and write manifest.json atomically (temp file + rename).

    For tools that add files to an existing bundle (engines, reduced-precision graphs). Returns the manifest.
    """
    manifest = {**manifest, "files": files_entry(directory)}
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{MANIFEST}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(json.dumps(manifest, indent=2) + "\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, directory / MANIFEST)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return manifest


def add_precision(directory: Path, precision: str, files: dict[str, Path], entry: dict[str, Any]) -> dict[str, Any]:
    """Move a reduced-precision variant's files (name in the bundle -> where they are now, on the same file
    system) into the bundle and record `entry` under `manifest["precisions"][precision]`, the manifest last."""
    bundle = load_bundle(directory, verify_files=False)
    for name, source in files.items():
        os.replace(source, bundle.path / name)
    precisions = {**bundle.precisions, precision: entry}
    return write_manifest(bundle.path, {**bundle.manifest, "precisions": precisions})


# --- Small predicates. -------------------------------------------------------------------------------------------


def _inside(root: Path, file: Path) -> bool:
    """Whether `file`, its symbolic links followed, lies inside the directory `root` (itself resolved)."""
    real = Path(os.path.realpath(file))
    return real != root and root in real.parents


def _key(name: str) -> str:
    """An object key as a manifest path shows it: plain when it is a short printable word, else `shown`."""
    return name if len(name) <= 40 and name.isprintable() and "." not in name else shown(name)


def _is_integer(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_dimension(value: Any) -> bool:
    """A size (a non-negative integer) or a dynamic axis name (text)."""
    return isinstance(value, str) or (_is_integer(value) and value >= 0)
