"""The TensorRT runner reads an engine file only once its bytes match the sha256 in the bundle's `files` table, and
what it hands TensorRT is those bytes. TensorRT and the machine are stand-ins (as in `test_tensorrt_build`)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from runtime.core import engines
from runtime.core.backends import tensorrt as trt_backend
from runtime.core.backends.base import BackendError
from runtime.core.bundle import MANIFEST, Bundle, load_bundle, write_manifest
from runtime.core.profiles import load_build_profile

MACHINE = engines.Machine("10.3.0.30", "Orin", "8.7")
ENGINE = "restoration.fp32.engine"
PROFILE_TEXT = """\
precision: fp32
batch: {min: 1, opt: 1, max: 2}
height: {min: 32, opt: 64, max: 96}
width: {min: 32, opt: 64, max: 96}
"""


class Deserialized:
    """The stand-in TensorRT: records what it is asked to deserialize, and gives no engine (or raises)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[bytes] = []
        self.error = error

    def module(self) -> types.SimpleNamespace:
        """What `import tensorrt` gives: only the `Runtime` the runner uses."""
        calls, error = self.calls, self.error

        class Runtime:
            def __init__(self, logger: Any) -> None:
                pass

            def deserialize_cuda_engine(self, data: bytes) -> None:
                calls.append(bytes(data))
                if error is not None:
                    raise error

        return types.SimpleNamespace(Runtime=Runtime)


@pytest.fixture
def engine_bundle(bundle_copy, tmp_path) -> Path:
    """`bundle_copy` with a (stand-in) restoration fp32 engine built on `MACHINE`, in the manifest and its files."""
    (bundle_copy / ENGINE).write_bytes(b"serialized engine " * 64)
    profile = tmp_path / "small-test.yaml"
    profile.write_text(PROFILE_TEXT)
    manifest = load_bundle(bundle_copy).manifest
    sha = engines.graph_sha256(manifest, "restoration")
    record = engines.new_record("restoration", "fp32", MACHINE, load_build_profile(profile), sha, 1.0)
    write_manifest(bundle_copy, engines.with_engine(manifest, record))
    return bundle_copy


def stand_in(monkeypatch, tensorrt: Deserialized) -> None:
    monkeypatch.setattr(trt_backend, "unavailable_reason", lambda: None)
    monkeypatch.setattr(trt_backend, "current_machine", lambda: MACHINE)
    monkeypatch.setattr(trt_backend, "logger", lambda: None)
    monkeypatch.setitem(sys.modules, "tensorrt", tensorrt.module())


def one_line(error: pytest.ExceptionInfo[BackendError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_the_engine_verified_is_the_engine_deserialized(engine_bundle, monkeypatch):
    tensorrt = Deserialized()
    stand_in(monkeypatch, tensorrt)
    with pytest.raises(BackendError) as error:  # the stand-in gives no engine
        trt_backend.load(load_bundle(engine_bundle), "restoration", "fp32")
    assert "TensorRT could not deserialize the engine" in one_line(error)
    assert tensorrt.calls == [(engine_bundle / ENGINE).read_bytes()]


@pytest.mark.parametrize("when", ["after loading the bundle", "in a bundle loaded without verify_files"])
def test_a_changed_engine_is_refused_before_tensorrt_sees_it(engine_bundle, monkeypatch, when):
    tensorrt = Deserialized()
    stand_in(monkeypatch, tensorrt)
    engine = engine_bundle / ENGINE
    changed = engine.read_bytes().replace(b"serialized", b"SERIALIZED", 1)
    if when == "after loading the bundle":
        bundle = load_bundle(engine_bundle)
        engine.write_bytes(changed)
    else:
        engine.write_bytes(changed)
        bundle = load_bundle(engine_bundle, verify_files=False)
    with pytest.raises(BackendError) as error:
        trt_backend.load(bundle, "restoration", "fp32")
    assert one_line(error) == f"{engine}: sha256 differs from {MANIFEST}: the engine was changed or damaged"
    assert tensorrt.calls == []


def test_an_engine_not_in_the_files_table_is_refused(engine_bundle, monkeypatch):
    tensorrt = Deserialized()
    stand_in(monkeypatch, tensorrt)
    manifest = json.loads((engine_bundle / MANIFEST).read_text())
    del manifest["files"][ENGINE]
    unchecked = Bundle(engine_bundle, manifest)  # load_bundle refuses it; the runner does too
    with pytest.raises(BackendError) as error:
        trt_backend.load(unchecked, "restoration", "fp32")
    assert one_line(error) == (
        f"{engine_bundle / MANIFEST}: the restoration fp32 engine record names '{ENGINE}', which has no sha256 entry "
        "in files"
    )
    assert tensorrt.calls == []


def test_an_engine_named_outside_the_bundle_is_refused_unread(engine_bundle, monkeypatch, tmp_path):
    tensorrt = Deserialized()
    stand_in(monkeypatch, tensorrt)
    (tmp_path / "elsewhere.engine").write_bytes(b"engine from elsewhere")
    manifest = json.loads((engine_bundle / MANIFEST).read_text())
    manifest["engines"][0]["file"] = "../elsewhere.engine"
    manifest["files"]["../elsewhere.engine"] = manifest["files"][ENGINE]
    with pytest.raises(BackendError) as error:
        trt_backend.load(Bundle(engine_bundle, manifest), "restoration", "fp32")
    assert one_line(error) == (
        f"{engine_bundle / MANIFEST}: the restoration fp32 engine record names '../elsewhere.engine', outside the "
        "bundle"
    )
    assert tensorrt.calls == []


def test_tensorrt_failing_on_an_engine_is_one_line(engine_bundle, monkeypatch):
    tensorrt = Deserialized(RuntimeError("std::exception\nwith a second line"))
    stand_in(monkeypatch, tensorrt)
    with pytest.raises(BackendError) as error:
        trt_backend.load(load_bundle(engine_bundle), "restoration", "fp32")
    message = one_line(error)
    assert message.startswith(f"{engine_bundle / ENGINE}: TensorRT could not deserialize the engine (std::exception)")
    assert "python -m export.tensorrt" in message
