"""The bundle: a directory of ONNX graphs (and engines) described by `manifest.json`; load it and prove it whole.

The export writes bundles, the runtime reads them; this module is the one definition of the manifest both use.
Loading refuses, with one line naming the file and the problem, a missing or unreadable manifest, an unknown
schema version, a missing graph and a file whose sha256 differs from the manifest's.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
#: Graphs every bundle holds, by role; the manifest maps each role to its file, I/O and sha256.
REQUIRED_GRAPHS = ("trajectory", "restoration", "sequence")


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


def load_bundle(path: str | Path, verify_files: bool = True) -> Bundle:
    """Read and validate a bundle directory. `verify_files=False` skips the sha256 pass (large bundles)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory")
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: missing; {path} is not a bundle")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{manifest_path}: unreadable manifest ({error})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path}: not a manifest (a JSON object is expected)")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path}: unknown schema_version {version!r}; this runtime reads version {SCHEMA_VERSION}"
        )
    graphs = manifest.get("graphs", {})
    absent = [role for role in REQUIRED_GRAPHS if role not in graphs]
    if absent:
        raise BundleError(f"{manifest_path}: lists no {', '.join(absent)} graph")
    for name, entry in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{file}: missing from the bundle (listed in {MANIFEST})")
        if verify_files and file_sha256(file) != entry["sha256"]:
            raise BundleError(f"{file}: sha256 differs from {MANIFEST}: the file was changed or damaged")
    for role in REQUIRED_GRAPHS:
        if graphs[role]["file"] not in manifest.get("files", {}):
            raise BundleError(f"{manifest_path}: graph {graphs[role]['file']} has no sha256 entry")
    return Bundle(path, manifest)


def files_entry(directory: Path) -> dict[str, dict[str, Any]]:
    """The manifest's `files` table: size and sha256 of every file in a bundle directory but the manifest."""
    return {
        file.name: {"bytes": file.stat().st_size, "sha256": file_sha256(file)}
        for file in sorted(directory.iterdir())
        if file.is_file() and file.name != MANIFEST and not file.name.startswith(".")
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
