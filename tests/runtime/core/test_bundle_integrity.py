"""What a bundle's manifest may name and what loading it proves: every name confined to the bundle folder, every
file the runtime loads listed with its sha256 and checked, bounded manifests, and one `BundleError` line for any
malformed one. Each refusal is shown on a bundle crafted from `bundle_copy`."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.core import engines
from runtime.core.backends import BackendSettings, load_runners
from runtime.core.backends.base import BackendError
from runtime.core.bundle import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    Bundle,
    BundleError,
    load_bundle,
    plain_name,
    write_manifest,
)
from runtime.core.limits import LimitError
from runtime.core.profiles import load_build_profile
from tests.conftest import run

SENTINEL = "sentinel-outside-the-bundle-7f3a"
#: A stand-in machine and build profile for engine records.
MACHINE = engines.Machine("10.3.0.30", "Orin", "8.7")


def read(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / MANIFEST).read_text())


def write(bundle: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest as given (no refreshed `files` table, unlike `write_manifest`)."""
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def refused(bundle: Path, verify_files: bool = True) -> str:
    """The one-line message `load_bundle` refuses the bundle with."""
    with pytest.raises(BundleError) as error:
        load_bundle(bundle, verify_files=verify_files)
    message = str(error.value)
    assert "\n" not in message and SENTINEL not in message
    return message


def engine_record(bundle: Path, file: str = "restoration.fp32.engine") -> dict[str, Any]:
    """A restoration fp32 engine record for this bundle's graph, built on `MACHINE`, naming `file`."""
    config = bundle.parent / "profile.yaml"
    config.write_text(
        "precision: fp32\nbatch: {min: 1, opt: 1, max: 2}\nheight: {min: 32, opt: 64, max: 96}\n"
        "width: {min: 32, opt: 64, max: 96}\n"
    )
    sha = read(bundle)["files"]["restoration.onnx"]["sha256"]
    record = engines.new_record("restoration", "fp32", MACHINE, load_build_profile(config), sha, 1.0)
    return {**record.as_manifest(), "file": file}


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder beside the bundle holding a valid-looking graph and a secret, which no load may read."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text(SENTINEL)
    (folder / "trajectory.onnx").write_bytes((tmp_path / "bundle" / "trajectory.onnx").read_bytes())
    return folder


class Opens:
    """The audit hook that records every file opened while a `recorded_opens` block runs (Python's `open` and
    `os.open`, so onnx's reads too)."""

    paths: list[str] | None = None

    @classmethod
    def hook(cls, event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and cls.paths is not None and isinstance(args[0], str | bytes | os.PathLike):
            cls.paths.append(os.fsdecode(args[0]))


sys.addaudithook(Opens.hook)


@contextlib.contextmanager
def recorded_opens() -> Iterator[list[str]]:
    """The paths of the files opened inside the block."""
    Opens.paths = []
    try:
        yield Opens.paths
    finally:
        Opens.paths = None


def outside_of(bundle: Path, paths: list[str]) -> list[str]:
    """The paths that resolve outside `bundle`."""
    root = os.path.realpath(bundle) + os.sep
    return [path for path in paths if not os.path.realpath(path).startswith(root)]


# --- 1. Every name is confined to the bundle folder. --------------------------------------------------------------


def name_slots(bundle: Path) -> dict[str, Callable[[dict[str, Any], str], None]]:
    """Where a manifest names a file, each as a function that puts a name there."""

    def files_key(manifest: dict[str, Any], name: str) -> None:
        manifest["files"][name] = manifest["files"].pop("trajectory.onnx")

    def graph_file(manifest: dict[str, Any], name: str) -> None:
        manifest["graphs"]["trajectory"]["file"] = name

    def variant(manifest: dict[str, Any], name: str) -> None:
        manifest["precisions"] = {"int8-cpu": {"graphs": {"restoration": name}, "gate": {"passed": True}}}

    def engine(manifest: dict[str, Any], name: str) -> None:
        manifest["engines"] = [engine_record(bundle, name)]

    return {"files": files_key, "graphs.trajectory.file": graph_file, "variant": variant, "engine": engine}


@pytest.mark.parametrize("slot", ["files", "graphs.trajectory.file", "variant", "engine"])
@pytest.mark.parametrize("kind", ["parent", "absolute", "subfolder", "symlink out"])
def test_a_name_outside_the_bundle_is_refused_unread(bundle_copy, outside, slot, kind):
    name = {
        "parent": "../outside/trajectory.onnx",
        "absolute": str(outside / "trajectory.onnx"),
        "subfolder": "sub/trajectory.onnx",
        "symlink out": "escape.onnx",
    }[kind]
    (bundle_copy / "escape.onnx").symlink_to(outside / "trajectory.onnx")
    manifest = read(bundle_copy)
    sha256 = manifest["files"]["trajectory.onnx"]  # the outside copy's
    name_slots(bundle_copy)[slot](manifest, name)
    manifest["files"].setdefault(name, sha256)
    write(bundle_copy, manifest)
    with recorded_opens() as opened:
        message = refused(bundle_copy)
    assert message.startswith(f"{bundle_copy / MANIFEST}: ") and f"names {name!r}, outside the bundle" in message
    assert opened and outside_of(bundle_copy, opened) == []


def test_whether_an_outside_path_exists_is_not_told(bundle_copy, outside):
    messages = []
    base = read(bundle_copy)
    for name in ("../outside/trajectory.onnx", "../outside/absent.onnx"):
        manifest = copy.deepcopy(base)
        manifest["graphs"]["trajectory"]["file"] = name
        manifest["files"][name] = {"sha256": "0" * 64}
        write(bundle_copy, manifest)
        messages.append(refused(bundle_copy).replace(name, "NAME"))
    assert messages[0] == messages[1]


def test_a_symlink_to_a_file_inside_the_bundle_is_an_alias(bundle_copy):
    (bundle_copy / "alias.onnx").symlink_to("trajectory.onnx")
    manifest = read(bundle_copy)
    manifest["graphs"]["trajectory"]["file"] = "alias.onnx"
    manifest["files"]["alias.onnx"] = manifest["files"]["trajectory.onnx"]
    write(bundle_copy, manifest)
    with recorded_opens() as opened:
        assert load_bundle(bundle_copy).graph_path("trajectory") == bundle_copy / "alias.onnx"
    assert len([path for path in opened if Path(path).name in ("alias.onnx", "trajectory.onnx")]) == 1


@given(st.text(max_size=30))
def test_a_plain_name_never_leaves_its_folder(name):
    if plain_name(name):
        assert os.path.dirname(os.path.normpath(os.path.join("/bundle", name))) == "/bundle"
        assert "/" not in name and "\\" not in name and name not in (".", "..")


# --- 2. Every file the runtime loads is listed and verified. -----------------------------------------------------


def test_a_refine_graph_without_a_sha256_entry_is_refused(bundle_copy):
    manifest = read(bundle_copy)
    del manifest["files"]["refine.onnx"]
    write(bundle_copy, manifest)
    assert refused(bundle_copy) == (
        f"{bundle_copy / MANIFEST}: graphs.refine.file names 'refine.onnx', which has no sha256 entry in files"
    )


def test_a_variant_or_engine_without_a_sha256_entry_is_refused(bundle_copy):
    (bundle_copy / "restoration.int8-cpu.onnx").write_bytes((bundle_copy / "restoration.onnx").read_bytes())
    manifest = read(bundle_copy)
    manifest["precisions"] = {"int8-cpu": {"graphs": {"restoration": "restoration.int8-cpu.onnx"}}}
    write(bundle_copy, manifest)
    assert refused(bundle_copy).endswith(
        "precisions.int8-cpu.graphs.restoration names 'restoration.int8-cpu.onnx', which has no sha256 entry in files"
    )
    write_manifest(bundle_copy, manifest)
    assert load_bundle(bundle_copy).graph_path("restoration", "int8-cpu") == bundle_copy / "restoration.int8-cpu.onnx"
    (bundle_copy / "restoration.fp32.engine").write_bytes(b"engine")
    write(bundle_copy, {**read(bundle_copy), "engines": [engine_record(bundle_copy)]})
    assert refused(bundle_copy).endswith(
        "engines[0].file names 'restoration.fp32.engine', which has no sha256 entry in files"
    )


def test_a_changed_variant_or_engine_is_refused(bundle_copy):
    (bundle_copy / "restoration.int8-cpu.onnx").write_bytes((bundle_copy / "restoration.onnx").read_bytes())
    (bundle_copy / "restoration.fp32.engine").write_bytes(b"engine")
    variant = {"graphs": {"restoration": "restoration.int8-cpu.onnx"}}
    write_manifest(bundle_copy, {**read(bundle_copy), "precisions": {"int8-cpu": variant}})
    write_manifest(bundle_copy, {**read(bundle_copy), "engines": [engine_record(bundle_copy)]})
    assert load_bundle(bundle_copy)
    for name in ("restoration.int8-cpu.onnx", "restoration.fp32.engine"):
        original = (bundle_copy / name).read_bytes()
        (bundle_copy / name).write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        assert (
            refused(bundle_copy)
            == f"{bundle_copy / name}: sha256 differs from {MANIFEST}: the file was changed or damaged"
        )
        (bundle_copy / name).write_bytes(original)


@pytest.fixture
def external_bundle(bundle_copy) -> Path:
    """`bundle_copy` with the restoration graph's weights in an external-data file, `restoration.weights`."""
    model = onnx.load(str(bundle_copy / "restoration.onnx"))
    onnx.save_model(
        model,
        str(bundle_copy / "restoration.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="restoration.weights",
        size_threshold=0,
    )
    write_manifest(bundle_copy, read(bundle_copy))
    return bundle_copy


def relocate(graph: Path, location: str) -> None:
    """Point every external tensor of `graph` at `location`."""
    model = onnx.load(str(graph), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    graph.write_bytes(model.SerializeToString())


def test_a_graph_with_listed_external_data_loads_and_runs(external_bundle):
    bundle = load_bundle(external_bundle)
    assert "restoration.weights" in bundle.manifest["files"]
    runner = load_runners(bundle, ["restoration"], BackendSettings("ort-cpu"), log=lambda _: None)[1]["restoration"]
    inputs = {
        "blurry": np.full((1, 3, 32, 32), 0.5, np.float32),
        "trajectory": np.zeros((1, 25, 3), np.float32),
        "intrinsics": np.float32([[[32, 0, 16], [0, 32, 16], [0, 0, 1]]]),
        "sigma": np.float32([0.01]),
    }
    assert np.isfinite(runner.run(inputs)["restored"]).all()


def test_changed_external_data_is_refused(external_bundle):
    weights = external_bundle / "restoration.weights"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert refused(external_bundle) == f"{weights}: sha256 differs from {MANIFEST}: the file was changed or damaged"


def test_external_data_without_a_sha256_entry_is_refused(external_bundle):
    manifest = read(external_bundle)
    del manifest["files"]["restoration.weights"]
    write(external_bundle, manifest)
    graph = external_bundle / "restoration.onnx"
    for verify in (True, False):
        assert refused(external_bundle, verify) == (
            f"{graph}: external data 'restoration.weights' has no sha256 entry in {MANIFEST}'s files"
        )


@pytest.mark.parametrize("location", ["../outside/secret.txt", "escape.bin", "/etc/hostname", "sub/weights.bin"])
def test_external_data_outside_the_bundle_is_refused(external_bundle, outside, location):
    (external_bundle / "escape.bin").symlink_to(outside / "secret.txt")
    graph = external_bundle / "restoration.onnx"
    relocate(graph, location)
    write_manifest(external_bundle, read(external_bundle))
    with recorded_opens() as opened:
        assert refused(external_bundle) == f"{graph}: external data names {location!r}, outside the bundle"
    assert outside_of(external_bundle, opened) == []


def test_a_graph_holding_the_external_data_key_that_is_not_onnx_is_refused(bundle_copy):
    (bundle_copy / "sequence.onnx").write_bytes(b"\xff\xff location \xff")
    write_manifest(bundle_copy, read(bundle_copy))
    message = refused(bundle_copy)
    assert message.startswith(f"{bundle_copy / 'sequence.onnx'}: not a readable ONNX graph (")


def test_each_file_is_read_once_however_many_names_point_at_it(bundle_copy):
    manifest = read(bundle_copy)
    for index in range(300):
        os.link(bundle_copy / "trajectory.onnx", bundle_copy / f"alias{index}.onnx")
        manifest["files"][f"alias{index}.onnx"] = manifest["files"]["trajectory.onnx"]
    manifest["precisions"] = {
        f"variant{index}": {"graphs": {"trajectory": f"alias{index}.onnx", "restoration": "restoration.onnx"}}
        for index in range(300)
    }
    write(bundle_copy, manifest)
    for verify in (True, False):
        with recorded_opens() as opened:
            load_bundle(bundle_copy, verify_files=verify)
        assert len([path for path in opened if Path(path).name.startswith(("alias", "trajectory"))]) == 1


# --- 3. Bounds. ----------------------------------------------------------------------------------------------------


def test_a_manifest_over_1_mib_is_refused(bundle_copy):
    write(bundle_copy, {**read(bundle_copy), "notes": "x" * MAX_MANIFEST_BYTES})
    assert refused(bundle_copy) == (
        f"{bundle_copy / MANIFEST}: larger than 1048576 bytes, the most a manifest may have"
    )


@pytest.mark.parametrize("depth", [33, 200_000])
def test_a_manifest_nested_too_deeply_is_refused(bundle_copy, depth):
    text = json.dumps({**read(bundle_copy), "notes": "DEEP"}).replace('"DEEP"', "[" * depth + "]" * depth)
    (bundle_copy / MANIFEST).write_text(text)
    assert refused(bundle_copy) == f"{bundle_copy / MANIFEST}: nested deeper than 32 levels"


def test_a_manifest_nested_32_levels_loads(bundle_copy):
    text = json.dumps({**read(bundle_copy), "notes": "DEEP"}).replace('"DEEP"', "[" * 31 + "]" * 31)
    (bundle_copy / MANIFEST).write_text(text)
    assert load_bundle(bundle_copy)


@pytest.mark.parametrize(
    ("key", "value", "parts"),
    [
        ("min_side", 0, ("min_side 0", "outside 32..4096")),
        ("min_side", 8192, ("min_side 8192", "outside 32..4096")),
        ("default_sigma", 5.0, ("default_sigma", "outside 0..0.5")),
    ],
)
def test_a_setting_outside_its_bound_is_refused(bundle_copy, key, value, parts):
    write(bundle_copy, {**read(bundle_copy), key: value})
    message = refused(bundle_copy)
    assert message.startswith(f"{bundle_copy / MANIFEST}: ") and all(part in message for part in parts), message


def test_the_command_refuses_a_bundle_with_min_side_0_in_one_line(bundle_copy, tmp_path):
    from runtime.io.deblur import main

    write(bundle_copy, {**read(bundle_copy), "min_side": 0})
    cv2.imwrite(str(tmp_path / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    code, _, stderr = run(main, "--engine", bundle_copy, "-o", tmp_path / "out", tmp_path / "dot.png")
    assert code == 2 and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"error: {bundle_copy / MANIFEST}: min_side 0") and "outside 32..4096" in stderr
    assert not (tmp_path / "out").exists()


# --- 4. A malformed manifest is one line. -------------------------------------------------------------------------


DELETE = object()


def put(*keys: Any, value: Any = DELETE) -> Callable[[dict[str, Any]], None]:
    """A change that sets the manifest's value under `keys` to `value`, or deletes it."""

    def change(manifest: dict[str, Any]) -> None:
        target: Any = manifest
        for key in keys[:-1]:
            target = target[key]
        if value is DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value

    return change


MALFORMED = {
    "files entry without sha256": (put("files", "sequence.onnx", "sha256"), "files['sequence.onnx'].sha256 is missing"),
    "files entry a string": (put("files", "sequence.onnx", value="abc"), "files['sequence.onnx'] is not an object"),
    "files a list": (put("files", value=[]), "files is missing or not an object"),
    "graphs a list": (put("graphs", value=["trajectory.onnx"]), "graphs is missing or not an object"),
    "graph entry a string": (put("graphs", "sequence", value="sequence.onnx"), "graphs.sequence is not an object"),
    "graph without file": (put("graphs", "sequence", "file"), "graphs.sequence.file is missing or not a file name"),
    "graph file a number": (put("graphs", "sequence", "file", value=3), "graphs.sequence.file is missing or not a"),
    "graph without inputs": (put("graphs", "sequence", "inputs"), "graphs.sequence.inputs is missing or not a list"),
    "input without name": (
        put("graphs", "sequence", "inputs", 0, "name"),
        "graphs.sequence.inputs[0] is not an object with a name",
    ),
    "shape with a float": (
        put("graphs", "sequence", "inputs", 0, "shape", value=[1.5]),
        "graphs.sequence.inputs[0].shape is not a list of sizes and axis names",
    ),
    "no n_positions": (put("n_positions"), "n_positions is missing or not a positive integer"),
    "n_positions text": (put("n_positions", value="25"), "n_positions is missing or not a positive integer"),
    "n_positions float": (put("n_positions", value=25.0), "n_positions is missing or not a positive integer"),
    "no default_sigma": (put("default_sigma"), "default_sigma is missing or not a number"),
    "default_sigma text": (put("default_sigma", value="0.01"), "default_sigma is missing or not a number"),
    "min_side text": (put("min_side", value="32"), "min_side is not an integer"),
    "precisions a list": (put("precisions", value=[]), "precisions is not an object"),
    "variant a string": (put("precisions", value={"int8-cpu": "x"}), "precisions.int8-cpu is not an object"),
    "variant without graphs": (put("precisions", value={"fp16": {}}), "precisions.fp16.graphs is missing"),
    "gate a list": (
        put("precisions", value={"fp16": {"graphs": {}, "gate": []}}),
        "precisions.fp16.gate is not an object",
    ),
    "gate passed text": (
        put("precisions", value={"fp16": {"graphs": {}, "gate": {"passed": "no"}}}),
        "precisions.fp16.gate has a passed that is not true or false",
    ),
    "engines an object": (put("engines", value={}), "engines is not a list"),
    "engine a number": (put("engines", value=[1]), "engines[0]: engine entry 1 is not an object"),
    "engine without fields": (put("engines", value=[{"file": "x.engine"}]), "engines[0]: engine entry x.engine: lacks"),
    "architecture a list": (put("architecture", value=[]), "architecture is not an object of objects"),
    "n_iter text": (
        put("architecture", "restoration", "n_iter", value="4"),
        "architecture.restoration.n_iter is not a positive integer",
    ),
    "schema_version true": (put("schema_version", value=True), "unknown schema_version True"),
    "graph role with a newline": (put("graphs", "a\nb", value="x"), "graphs.'a\\nb' is not an object"),
    "precision with a newline": (put("precisions", value={"a\nb": {}}), "precisions.'a\\nb' is not a one-line name"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_manifest_is_one_line(bundle_copy, case):
    change, expected = MALFORMED[case]
    manifest = read(bundle_copy)
    change(manifest)
    write(bundle_copy, manifest)
    message = refused(bundle_copy)
    assert message.startswith(f"{bundle_copy / MANIFEST}: ") and expected in message, message


# --- The mutation loop: any manifest either loads or is refused in one line, and nothing outside is read. ----------

JUNK: list[Any] = [None, True, False, 0, -1, 1.5, 1e308, 10**30, "", "x", [], {}, [1, "a"], {"a": {"b": []}}]
EVIL = [
    "../outside/trajectory.onnx",
    "../outside/secret.txt",
    "../bundle/trajectory.onnx",
    "/etc/passwd",
    "escape.onnx",
    "escape-dir",
    "sub/trajectory.onnx",
    "./trajectory.onnx",
    "trajectory.onnx/",
    "..",
    ".",
    "",
    "trajectory.onnx\n",
    "a\x00b",
    "C:\\x.onnx",
    "..\\outside\\trajectory.onnx",
    "~",
    "manifest.json",
    "restoration.weights",
    "trajectory.onnx",
]


#: Nesting put in place of a value: within the limit wherever it goes, beyond it, and beyond the parser's recursion.
DEPTHS = (3, 40, 5000)


def _positions(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*path, key)
            yield from _positions(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*path, index)
            yield from _positions(child, (*path, index))


def _mutate(manifest: dict[str, Any], rng: random.Random, evil: list[str], record: dict[str, Any]) -> None:
    """One random change: delete, replace, retype or rename a value, or put a hostile name where files are named."""
    positions = list(_positions(manifest))
    *parents, last = rng.choice(positions)
    parent: Any = manifest
    for key in parents:
        parent = parent[key]
    kind = rng.choice(["delete", "replace", "retype", "rename", "name", "name", "deep"])
    if kind == "delete":
        del parent[last]
    elif kind == "replace":
        parent[last] = copy.deepcopy(rng.choice([*JUNK, *evil]))
    elif kind == "retype":
        value = parent[last]
        parent[last] = rng.choice([str(value), [value], {"value": value}, None])
    elif kind == "rename" and isinstance(parent, dict):
        parent[rng.choice(evil)] = parent.pop(last)
    elif kind == "deep":
        parent[last] = f"DEEP{rng.choice(DEPTHS)}"
    else:
        name = rng.choice(evil)
        slot = rng.choice(["files", "graph", "variant", "engine"])
        if slot == "files" and isinstance(manifest.get("files"), dict):
            manifest["files"][name] = {"sha256": rng.choice(["0" * 64, *(e["sha256"] for e in record["files"])])}
        elif slot == "graph" and isinstance(manifest.get("graphs"), dict):
            manifest["graphs"][rng.choice(["trajectory", "refine", "restoration"])] = {
                **copy.deepcopy(record["graph"]),
                "file": name,
            }
        elif slot == "variant":
            manifest["precisions"] = {"int8-cpu": {"graphs": {"restoration": name}, "gate": {"passed": True}}}
        else:
            manifest["engines"] = [{**copy.deepcopy(record["engine"]), "file": name}]


def _text(manifest: dict[str, Any]) -> str:
    text = json.dumps(manifest)
    for depth in DEPTHS:
        text = text.replace(f'"DEEP{depth}"', "[" * depth + "]" * depth)
    return text


def test_mutated_manifests_load_or_are_refused_in_one_line_and_never_read_outside(external_bundle, outside):
    bundle = external_bundle
    (bundle / "escape.onnx").symlink_to(outside / "trajectory.onnx")
    (bundle / "escape-dir").symlink_to(outside)
    base = read(bundle)
    record = {
        "files": list(base["files"].values()),
        "graph": base["graphs"]["trajectory"],
        "engine": engine_record(bundle),
    }
    evil = [*EVIL, str(outside / "trajectory.onnx"), str(outside / "secret.txt")]
    rng = random.Random(20240611)
    outcomes = {"loaded": 0, "refused": 0}
    opened: list[str] = []
    for _ in range(2400):
        manifest = copy.deepcopy(base)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            try:
                _mutate(manifest, rng, evil, record)
            except (KeyError, IndexError):  # the chosen position went with an earlier change
                pass
        (bundle / MANIFEST).write_text(_text(manifest))
        verify = rng.random() < 0.7
        try:
            with recorded_opens() as opened_here:
                load_bundle(bundle, verify_files=verify)
        except (BundleError, LimitError) as error:
            outcomes["refused"] += 1
            message = str(error)
            assert "\n" not in message and SENTINEL not in message, message
            assert message.startswith(str(bundle)), message
        else:
            outcomes["loaded"] += 1
        opened += opened_here
    assert opened and outside_of(bundle, opened) == []
    assert outcomes["loaded"] > 100 and outcomes["refused"] > 1000, outcomes


# --- 5. A corrupt graph whose sha256 was updated is one line where it is loaded. ---------------------------------


def corrupt(bundle: Path, role: str) -> Path:
    """Overwrite a graph with half of itself and record the new sha256 (as an attacker or a bad copy would)."""
    graph = bundle / f"{role}.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    write_manifest(bundle, read(bundle))
    return graph


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino", "auto"])
@pytest.mark.parametrize("role", ["restoration", "trajectory"])
def test_a_corrupt_graph_is_one_backend_error_line(bundle_copy, backend, role):
    if backend == "openvino":
        pytest.importorskip("openvino")
    graph = corrupt(bundle_copy, role)
    with pytest.raises(BackendError) as error:
        load_runners(load_bundle(bundle_copy), [role], BackendSettings(backend), log=lambda _: None)
    message = str(error.value)
    assert "\n" not in message and f"{graph}: " in message


def test_a_graph_with_external_data_escaping_is_one_backend_error_line_even_unchecked(external_bundle, outside):
    graph = external_bundle / "restoration.onnx"
    relocate(graph, "../outside/secret.txt")
    unchecked = Bundle(external_bundle, read(external_bundle))  # what load_bundle would refuse, straight to onnxruntime
    for backend in ("ort-cpu", "openvino"):
        with pytest.raises(BackendError) as error:
            load_runners(unchecked, ["restoration"], BackendSettings(backend), log=lambda _: None)
        assert "\n" not in str(error.value) and str(error.value).startswith(
            f"backend {backend} cannot run here: {graph}"
        )


def test_the_evaluation_command_says_a_graph_is_corrupt_in_one_line(bundle_copy, pairs):
    from runtime.tools.evaluate import main

    graph = corrupt(bundle_copy, "restoration")
    code, stdout, stderr = run(main, "--engine", bundle_copy, "--pairs", pairs, "--backend", "ort-cpu")
    assert code == 2 and stdout == ""
    assert len(stderr.splitlines()) == 1 and stderr.startswith(f"error: backend ort-cpu cannot run here: {graph}: ")
