"""The Triton model repository: configurations Triton's own schema parses, graphs copied byte for byte, the
`deblur` model's BLS path against the `Deblurrer`, its request checks, and the command's refusals and writes.

Triton itself does not run here. The `deblur` model runs against a stand-in `triton_python_backend_utils` whose
`InferenceRequest.exec()` does what Triton would do with the repository: it checks each BLS input against the
called model's config.pbtxt (names, dtypes, shapes with the implicit batch axis, reshapes) and runs the model's
copied ONNX file with onnxruntime.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest

from export import triton, triton_model
from runtime import BackendSettings, Deblurrer, RestoreSettings
from runtime.core import engines
from runtime.core.bundle import load_bundle, write_manifest
from runtime.core.profiles import load_build_profile
from tests.conftest import run
from tests.runtime.conftest import smooth_bgr8

# Triton's model-configuration schema (the `tritonclient[grpc]` package, with protobuf).
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
json_format = pytest.importorskip("google.protobuf.json_format")
text_format = pytest.importorskip("google.protobuf.text_format")

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "runtime" / "bundles" / "demo"
JETSON_PROFILE = ROOT / "configs" / "build" / "jetson-orin-720p.yaml"
ONNX_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(uint8)": "TYPE_UINT8"}
NUMPY_TYPES = {"TYPE_FP32": np.float32, "TYPE_UINT8": np.uint8}

pytestmark = pytest.mark.skipif(not DEMO.is_dir(), reason="no demo bundle shipped in runtime/bundles/demo")


def read_config(path: Path) -> Any:
    """A config.pbtxt parsed with Triton's model-configuration schema."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """The demo bundle's repository with the defaults (onnxruntime fp32, max_batch_size 4); read-only."""
    return triton.export_repository(DEMO, tmp_path_factory.mktemp("triton") / "repo").path


@pytest.fixture(scope="module")
def unbatched(tmp_path_factory) -> Path:
    """The demo bundle's repository without Triton's batch axis (max_batch_size 0); read-only."""
    return triton.export_repository(DEMO, tmp_path_factory.mktemp("triton") / "repo", max_batch=0).path


@pytest.fixture
def demo_copy(tmp_path) -> Path:
    """A copy of the demo bundle this test may change."""
    return Path(shutil.copytree(DEMO, tmp_path / "demo"))


# --- A stand-in for Triton's Python backend utilities, serving a repository's graph models with onnxruntime. -----


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError:
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        self._message, self.code = message, code

    def message(self) -> str:
        return self._message


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor] | None = None, error: TritonError | None = None) -> None:
        self._outputs, self._error = list(output_tensors or []), error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs


class ClientRequest:
    """What Triton hands the `deblur` model's `execute`: a request's input tensors."""

    def __init__(self, **inputs: np.ndarray) -> None:
        self.inputs = [Tensor(name, value) for name, value in inputs.items()]


class StandInServer:
    """A repository's graph models as Triton would serve them to BLS, each run by onnxruntime on its copied file."""

    def __init__(self, repository: Path) -> None:
        self.repository = repository
        self.sessions: dict[str, onnxruntime.InferenceSession] = {}
        self.calls: list[str] = []

    def infer(self, model: str, inputs: list[Tensor], outputs: list[str]) -> InferenceResponse:
        try:
            return InferenceResponse([Tensor(name, value) for name, value in self._run(model, inputs, outputs)])
        except ValueError as error:
            return InferenceResponse(error=TritonError(str(error)))

    def _run(self, model: str, inputs: list[Tensor], outputs: list[str]) -> list[tuple[str, np.ndarray]]:
        config = read_config(self.repository / model / "config.pbtxt")
        given = {tensor.name(): tensor.as_numpy() for tensor in inputs}
        if set(given) != {value.name for value in config.input}:
            raise ValueError(f"{model}: inputs {sorted(given)} are not the configuration's")
        feeds = {value.name: self._model_input(config, value, given[value.name]) for value in config.input}
        if model not in self.sessions:
            path = self.repository / model / "1" / "model.onnx"
            self.sessions[model] = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.calls.append(model)
        results = self.sessions[model].run(outputs, feeds)
        for value, result in zip(config.output, results, strict=True):
            assert _fits(result.shape, _api_shape(config, value)), f"{model} output {value.name} {result.shape}"
        return list(zip(outputs, results, strict=True))

    @staticmethod
    def _model_input(config: Any, value: Any, array: np.ndarray) -> np.ndarray:
        """Triton's checks of a request input against the configuration, then its reshape for the model."""
        data_type = model_config_pb2.DataType.Name(value.data_type)
        if array.dtype != NUMPY_TYPES[data_type]:
            raise ValueError(f"input {value.name}: {array.dtype}, the configuration says {data_type}")
        if not _fits(array.shape, _api_shape(config, value)):
            raise ValueError(f"input {value.name}: shape {list(array.shape)}, expected {_api_shape(config, value)}")
        if config.max_batch_size and array.shape[0] > config.max_batch_size:
            raise ValueError(f"input {value.name}: batch {array.shape[0]} over {config.max_batch_size}")
        if value.HasField("reshape"):
            batch = list(array.shape[:1]) if config.max_batch_size else []
            array = array.reshape([*batch, *value.reshape.shape])
        return array


def _api_shape(config: Any, value: Any) -> list[int]:
    return ([-1] if config.max_batch_size else []) + list(value.dims)


def _fits(shape: tuple[int, ...], expected: list[int]) -> bool:
    return len(shape) == len(expected) and all(want in (-1, got) for got, want in zip(shape, expected, strict=True))


def backend_utils(server: StandInServer) -> types.ModuleType:
    """The stand-in `triton_python_backend_utils`, its BLS requests served by `server`."""
    module = types.ModuleType("triton_python_backend_utils")

    class InferenceRequest:
        def __init__(self, model_name: str, requested_output_names: list[str], inputs: list[Tensor], **_: Any):
            self.model_name, self.outputs, self.inputs = model_name, list(requested_output_names), list(inputs)

        def exec(self) -> InferenceResponse:
            return server.infer(self.model_name, self.inputs, self.outputs)

    def get_input_tensor_by_name(request: ClientRequest, name: str) -> Tensor | None:
        return next((tensor for tensor in request.inputs if tensor.name() == name), None)

    def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
        return next((tensor for tensor in response.output_tensors() if tensor.name() == name), None)

    module.__dict__.update(
        Tensor=Tensor,
        TritonError=TritonError,
        InferenceResponse=InferenceResponse,
        InferenceRequest=InferenceRequest,
        PreferredMemory=lambda kind, device: (kind, device),
        TRITONSERVER_MEMORY_CPU="CPU",
        get_input_tensor_by_name=get_input_tensor_by_name,
        get_output_tensor_by_name=get_output_tensor_by_name,
    )
    return module


def load_deblur_model(repository: Path, monkeypatch) -> tuple[Any, StandInServer]:
    """The repository's `deblur/1/model.py`, imported from the repository and initialised as Triton would, with
    the stand-in backend utilities in place."""
    server = StandInServer(repository)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", backend_utils(server))
    spec = importlib.util.spec_from_file_location("deblur_model_under_test", repository / "deblur" / "1" / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = json_format.MessageToDict(
        read_config(repository / "deblur" / "config.pbtxt"), preserving_proto_field_name=True
    )
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_name": "deblur", "model_version": "1"})
    return model, server


# --- The configurations and the files. ----------------------------------------------------------------------------


def test_every_configuration_parses_under_tritons_schema(repository):
    names = sorted(path.parent.name for path in repository.glob("*/config.pbtxt"))
    assert names == ["deblur", "restoration", "sequence", "trajectory"]
    for name in names:
        assert read_config(repository / name / "config.pbtxt").name == name


@pytest.mark.parametrize("role", triton.GRAPH_MODELS)
def test_a_graph_models_configuration_agrees_with_its_onnx_graph(repository, role):
    config = read_config(repository / role / "config.pbtxt")
    assert (config.platform, config.backend, config.max_batch_size) == ("onnxruntime_onnx", "onnxruntime", 4)
    assert config.HasField("dynamic_batching") and not config.HasField("optimization")
    assert [(group.kind, group.count) for group in config.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)
    ]
    session = onnxruntime.InferenceSession(
        str(repository / role / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    for configured, actual in [(config.input, session.get_inputs()), (config.output, session.get_outputs())]:
        assert [value.name for value in configured] == [value.name for value in actual]
        for value, graph in zip(configured, actual, strict=True):
            assert model_config_pb2.DataType.Name(value.data_type) == ONNX_TYPES[graph.type]
            model_dims = list(value.reshape.shape) if value.HasField("reshape") else list(value.dims)
            assert [-1, *model_dims] == [dim if isinstance(dim, int) else -1 for dim in graph.shape]


def test_without_batching_the_batch_axis_is_an_ordinary_dynamic_dimension(unbatched):
    config = read_config(unbatched / "trajectory" / "config.pbtxt")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert [(value.name, list(value.dims), value.HasField("reshape")) for value in config.input] == [
        ("image", [-1, 3, -1, -1], False),
        ("focal_length", [-1], False),
    ]


def test_the_graphs_are_the_bundles_byte_for_byte(repository):
    manifest = load_bundle(DEMO).manifest
    for role in triton.GRAPH_MODELS:
        expected = manifest["files"][manifest["graphs"][role]["file"]]["sha256"]
        assert sha256(repository / role / "1" / "model.onnx") == expected


def test_the_deblur_model_is_this_module_and_imports_only_numpy_and_tritons_utilities(repository):
    source = repository / "deblur" / "1" / "model.py"
    assert source.read_bytes() == Path(triton_model.__file__).read_bytes()
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(str(node.module).split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"numpy", "triton_python_backend_utils"}
    ast.parse(source.read_text(), feature_version=(3, 8))  # the Python of Triton's stub on JetPack 5


def test_the_deblur_configuration_carries_the_bundles_values(repository):
    config = read_config(repository / "deblur" / "config.pbtxt")
    assert (config.backend, config.max_batch_size) == ("python", 0)
    inputs = {
        value.name: (model_config_pb2.DataType.Name(value.data_type), list(value.dims), value.optional)
        for value in config.input
    }
    assert inputs == {"image": ("TYPE_UINT8", [-1, -1, 3], False), "focal_length": ("TYPE_FP32", [1], True)}
    outputs = {
        value.name: (model_config_pb2.DataType.Name(value.data_type), list(value.dims)) for value in config.output
    }
    assert outputs == {"restored": ("TYPE_UINT8", [-1, -1, 3]), "trajectory": ("TYPE_FP32", [25, 3])}
    settings = triton_model.settings_from_config(json_format.MessageToDict(config, preserving_proto_field_name=True))
    assert settings == triton_model.Settings("trajectory", "restoration", True, 25, 32, 1024, 0, 0, 0.01)
    marker = json.loads((repository / triton.MARKER).read_text())
    assert marker["written_by"] == triton.PROG and marker["options"]["backend"] == "onnxruntime"


# --- The deblur model through BLS, against the Deblurrer. ---------------------------------------------------------


@pytest.mark.parametrize(("height", "width", "focal"), [(64, 64, None), (48, 64, 90.0)])
@pytest.mark.parametrize("fixture", ["repository", "unbatched"])
def test_the_deblur_model_restores_as_the_deblurrer_does(request, monkeypatch, fixture, height, width, focal):
    model, server = load_deblur_model(request.getfixturevalue(fixture), monkeypatch)
    bgr = smooth_bgr8(height, width, seed=3)
    inputs = {"image": np.ascontiguousarray(bgr[..., ::-1])}
    if focal is not None:
        inputs["focal_length"] = np.array([focal], np.float32)
    [response] = model.execute([ClientRequest(**inputs)])
    assert not response.has_error(), response.error().message()
    outputs = {tensor.name(): tensor.as_numpy() for tensor in response.output_tensors()}
    assert server.calls == ["trajectory", "restoration"]
    with Deblurrer(
        DEMO, BackendSettings("ort-cpu"), RestoreSettings(focal_length=focal), log=lambda _: None
    ) as reference:
        expected = reference(bgr)
    assert outputs["restored"].dtype == np.uint8 and outputs["restored"].shape == (height, width, 3)
    difference = np.abs(outputs["restored"].astype(int) - expected.restored[..., ::-1].astype(int))
    assert difference.max() <= 1
    assert outputs["trajectory"].dtype == np.float32 and outputs["trajectory"].shape == (25, 3)
    np.testing.assert_allclose(outputs["trajectory"], expected.trajectory, atol=1e-5, rtol=0)


def test_a_bad_request_gets_its_own_error_and_the_others_are_served(repository, monkeypatch):
    model, _ = load_deblur_model(repository, monkeypatch)
    good = ClientRequest(image=smooth_bgr8(40, 40, seed=1))
    bad = ClientRequest(image=smooth_bgr8(40, 40, seed=1), focal_length=np.array([np.nan], np.float32))
    missing = ClientRequest(focal_length=np.array([50.0], np.float32))
    responses = model.execute([bad, good, missing])
    assert responses[0].has_error() and responses[0].error().code == "INVALID_ARG"
    assert responses[0].error().message() == "focal_length must be a positive number of pixels, got nan"
    assert not responses[1].has_error()
    assert responses[2].error().message() == "the request has no image input"


def test_a_failing_model_call_is_answered_with_an_error_naming_the_model(repository, monkeypatch):
    model, server = load_deblur_model(repository, monkeypatch)
    monkeypatch.setattr(server, "_run", lambda *_: (_ for _ in ()).throw(ValueError("out of memory")))
    [response] = model.execute([ClientRequest(image=smooth_bgr8(40, 40))])
    assert response.error().code == "INTERNAL" and response.error().message() == "model trajectory: out of memory"


SETTINGS = triton_model.Settings("trajectory", "restoration", True, 25, 32, 1024, 0, 0, 0.01)


@pytest.mark.parametrize(
    ("image", "settings", "message"),
    [
        (np.zeros((64, 64, 3), np.float32), SETTINGS, "image must be UINT8 (8-bit RGB), got float32"),
        (np.zeros((64, 64), np.uint8), SETTINGS, "image must be HxWx3 RGB, got shape [64, 64]"),
        (np.zeros((64, 64, 4), np.uint8), SETTINGS, "image must be HxWx3 RGB, got shape [64, 64, 4]"),
        (np.zeros((16, 64, 3), np.uint8), SETTINGS, "image is 64x16; the bundle needs at least 32 px on each side"),
        (np.zeros((40, 1100, 3), np.uint8), SETTINGS, "image is 1100x40; this model restores images of at most 1024"),
        (
            np.zeros((800, 600, 3), np.uint8),
            triton_model.Settings("t", "r", True, 25, 32, 1024, 720, 1280, 0.01),
            "image is 600x800; the TensorRT engines served take at most 1280x720",
        ),
    ],
)
def test_images_the_models_cannot_take_are_refused(image, settings, message):
    with pytest.raises(triton_model.RequestError) as raised:
        triton_model.check_image(image, settings)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.array([0.0], np.float32), "focal_length must be a positive number of pixels, got 0.0"),
        (np.array([-50.0], np.float32), "focal_length must be a positive number of pixels, got -50.0"),
        (np.array([np.inf], np.float32), "focal_length must be a positive number of pixels, got inf"),
        (np.array([1.0, 2.0], np.float32), r"focal_length must hold one value \(pixels\), got shape \[2\]"),
        (np.array([50], np.int32), "focal_length must be FP32, got int32"),
    ],
)
def test_bad_focal_lengths_are_refused(value, message):
    with pytest.raises(triton_model.RequestError, match=f"^{message}$"):
        triton_model.focal_length(value, 48, 64)


def test_the_camera_is_the_runtimes():
    from runtime.core.camera import intrinsics

    assert triton_model.focal_length(None, 48, 64) == 64.0
    np.testing.assert_array_equal(triton_model.intrinsics(48, 64, 64.0), intrinsics(48, 64))
    np.testing.assert_array_equal(triton_model.intrinsics(48, 64, 90.0), intrinsics(48, 64, 90.0))
    assert triton_model.per_image(2.0, True).shape == (1, 1) and triton_model.per_image(2.0, False).shape == (1,)


# --- The command: refusals, --force and atomic writes. ------------------------------------------------------------


def test_an_existing_repository_is_replaced_only_with_force(tmp_path):
    out = tmp_path / "repo"
    assert run(triton.main, DEMO, "--out", out)[0] == 0
    code, _, stderr = run(triton.main, DEMO, "--out", out, "--instances", "2")
    assert code == 2 and stderr == f"error: {out}: exists; pass --force to replace it\n"
    assert run(triton.main, DEMO, "--out", out, "--instances", "2", "--force")[0] == 0
    assert read_config(out / "restoration" / "config.pbtxt").instance_group[0].count == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["repo"]  # no staging or retired folder left


def test_force_never_replaces_a_folder_this_command_did_not_write(tmp_path):
    out = tmp_path / "models"
    out.mkdir()
    (out / "keep.txt").write_text("someone's")
    code, _, stderr = run(triton.main, DEMO, "--out", out, "--force")
    assert code == 2 and stderr.count("\n") == 1
    assert f"{out}: exists and is not a model repository written by python -m export.triton" in stderr
    assert (out / "keep.txt").read_text() == "someone's"


def test_a_failed_write_leaves_the_previous_repository_whole(tmp_path, monkeypatch):
    out = tmp_path / "repo"
    assert run(triton.main, DEMO, "--out", out)[0] == 0
    before = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}
    copies = []

    def failing_copy(source: Path, target: Path, expected: str) -> None:
        copies.append(target)
        if len(copies) == 2:
            raise triton.TritonExportError(f"{target}: the copy differs")
        shutil.copyfile(source, target)

    monkeypatch.setattr(triton, "copy_verified", failing_copy)
    code, _, stderr = run(triton.main, DEMO, "--out", out, "--instances", "3", "--force")
    assert code == 2 and stderr.startswith("error: ") and stderr.count("\n") == 1
    assert {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["repo"]


def test_a_failed_rename_puts_the_previous_repository_back(tmp_path):
    out = tmp_path / "repo"
    out.mkdir()
    (out / triton.MARKER).write_text("{}")
    with pytest.raises(FileNotFoundError):
        triton.move_into_place(tmp_path / "vanished", out)
    assert (out / triton.MARKER).read_text() == "{}"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["repo"]


def test_a_damaged_copy_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(triton, "file_sha256", lambda _: "0" * 64)
    code, _, stderr = run(triton.main, DEMO, "--out", tmp_path / "repo")
    assert code == 2 and "differs from the sha256 in the bundle's manifest.json" in stderr
    assert not (tmp_path / "repo").exists()


def test_a_bad_bundle_is_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    code, stdout, stderr = run(triton.main, tmp_path / "empty", "--out", tmp_path / "repo")
    assert (code, stdout) == (
        2,
        "",
    ) and stderr == f"error: {tmp_path / 'empty' / 'manifest.json'}: missing; {tmp_path / 'empty'} is not a bundle\n"
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--max-batch", "-1"], "--max-batch must be 0 (no batching) or more, got -1"),
        (["--instances", "0"], "--instances must be at least 1, got 0"),
        (["--max-side", "16"], "--max-side 16 is below the smallest image side the models take, 32"),
        (["--precision", "bf16"], "--backend onnxruntime serves fp32, fp16, int8-cpu, not bf16"),
        (["--precision", "int8-cpu", "--device", "gpu"], "--backend onnxruntime --precision int8-cpu runs on the CPU"),
        (["--backend", "tensorrt", "--precision", "int8-cpu"], "TensorRT engines are built at fp32, fp16, int8, not"),
    ],
)
def test_bad_choices_are_refused_in_one_line(tmp_path, arguments, message):
    code, _, stderr = run(triton.main, DEMO, "--out", tmp_path / "repo", *arguments)
    assert code == 2 and stderr.startswith(f"error: {message}") and stderr.count("\n") == 1


# --- Precisions: the fp16 variant on onnxruntime, TensorRT engines. -----------------------------------------------


def add_fp16_variant(bundle: Path, passed: bool = True) -> None:
    """An fp16 variant whose graphs are copies of the FP32 ones, recorded as `calibration.fp16` records it."""
    loaded = load_bundle(bundle)
    graphs = {}
    for role in ("trajectory", "restoration", "sequence"):
        graphs[role] = f"{role}.fp16.onnx"
        shutil.copyfile(loaded.graph_path(role), bundle / graphs[role])
    variant = {"graphs": graphs, "gate": {"passed": passed, "summary": "loss 0.00 dB"}}
    write_manifest(bundle, {**loaded.manifest, "precisions": {"fp16": variant}})


def test_fp16_on_onnxruntime_needs_the_bundles_fp16_graphs(tmp_path):
    code, _, stderr = run(triton.main, DEMO, "--out", tmp_path / "repo", "--precision", "fp16")
    assert code == 2 and stderr.count("\n") == 1
    assert f"{DEMO}: no fp16 graphs in this bundle (it has fp32); add them: python -m calibration.fp16 " in stderr


def test_fp16_on_onnxruntime_serves_the_fp16_graphs_on_the_gpu_under_tensorrts_fp16_mode(demo_copy, tmp_path):
    add_fp16_variant(demo_copy)
    out = tmp_path / "repo"
    assert run(triton.main, demo_copy, "--out", out, "--precision", "fp16")[0] == 0
    manifest = load_bundle(demo_copy).manifest
    for role in triton.GRAPH_MODELS:
        assert sha256(out / role / "1" / "model.onnx") == manifest["files"][f"{role}.fp16.onnx"]["sha256"]
        config = read_config(out / role / "config.pbtxt")
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        [accelerator] = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert accelerator.name == "tensorrt" and dict(accelerator.parameters) == {"precision_mode": "FP16"}


def test_a_variant_that_failed_its_gate_is_served_only_when_forced(demo_copy, tmp_path):
    add_fp16_variant(demo_copy, passed=False)
    code, _, stderr = run(triton.main, demo_copy, "--out", tmp_path / "repo", "--precision", "fp16")
    assert code == 2 and "failed their accuracy gate (loss 0.00 dB); pass --force-precision" in stderr
    assert run(triton.main, demo_copy, "--out", tmp_path / "repo", "--precision", "fp16", "--force-precision")[0] == 0


def test_tensorrt_without_engines_is_refused_with_the_command_that_builds_them(tmp_path):
    code, stdout, stderr = run(triton.main, DEMO, "--out", tmp_path / "repo", "--backend", "tensorrt")
    assert (code, stdout) == (2, "") and stderr.count("\n") == 1
    assert stderr == f"error: {engines.missing_reason(str(DEMO), 'trajectory', 'fp32')}\n"
    assert "python -m export.tensorrt" in stderr and not (tmp_path / "repo").exists()


def add_engines(bundle: Path, precision: str = "fp16") -> dict[str, bytes]:
    """Stand-in engine files and their manifest records for the three nets, as if built on a Jetson Orin."""
    loaded = load_bundle(bundle)
    manifest, plans = loaded.manifest, {}
    for role in triton.GRAPH_MODELS:
        plans[role] = f"{role} engine bytes".encode()
        (bundle / engines.engine_file(role, precision)).write_bytes(plans[role])
        record = engines.new_record(
            role,
            precision,
            engines.Machine("10.3.0.30", "Orin (nvgpu)", "8.7"),
            load_build_profile(JETSON_PROFILE),
            engines.graph_sha256(manifest, role, precision),
            1.0,
        )
        manifest = engines.with_engine(manifest, record)
    write_manifest(bundle, manifest)
    return plans


def test_tensorrt_serves_the_bundles_engines_byte_for_byte(demo_copy, tmp_path):
    plans = add_engines(demo_copy)
    out = tmp_path / "repo"
    code, stdout, _ = run(triton.main, demo_copy, "--out", out, "--backend", "tensorrt", "--precision", "fp16")
    assert code == 0 and "built with TensorRT 10.3.0.30 on Orin (nvgpu)" in stdout
    for role in triton.GRAPH_MODELS:
        assert (out / role / "1" / "model.plan").read_bytes() == plans[role]
        config = read_config(out / role / "config.pbtxt")
        assert (config.platform, config.max_batch_size) == ("tensorrt_plan", 1)  # the profile's largest batch
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    deblur = read_config(out / "deblur" / "config.pbtxt")
    settings = triton_model.settings_from_config(json_format.MessageToDict(deblur, preserving_proto_field_name=True))
    assert (settings.max_height, settings.max_width) == (1280, 1280)
    assert json.loads((out / triton.MARKER).read_text())["engines"]["restoration"]["tensorrt_version"] == "10.3.0.30"


def test_tensorrt_refuses_a_batch_its_engines_do_not_take(demo_copy, tmp_path):
    add_engines(demo_copy)
    arguments = ("--out", tmp_path / "repo", "--backend", "tensorrt", "--precision", "fp16")
    code, _, stderr = run(triton.main, demo_copy, *arguments, "--max-batch", "2")
    assert code == 2 and "engine takes batches of at most 1 (profile jetson-orin-720p); pass --max-batch 1" in stderr
    code, _, stderr = run(triton.main, demo_copy, *arguments, "--device", "cpu")
    assert code == 2 and stderr == "error: --backend tensorrt --precision fp16 runs on the GPU only\n"


def test_an_engine_built_from_another_graph_is_refused(demo_copy, tmp_path):
    add_engines(demo_copy)
    manifest = load_bundle(demo_copy).manifest
    manifest["engines"] = [{**entry, "onnx_sha256": "0" * 64} for entry in manifest["engines"]]
    write_manifest(demo_copy, manifest)
    code, _, stderr = run(
        triton.main, demo_copy, "--out", tmp_path / "repo", "--backend", "tensorrt", "--precision", "fp16"
    )
    assert (
        code == 2
        and "trajectory.fp16.engine: built from another trajectory graph" in stderr
        and stderr.count("\n") == 1
    )


# --- The configuration builders. ----------------------------------------------------------------------------------


def test_a_tensor_without_a_batch_axis_cannot_be_batched_and_unknown_dtypes_are_refused():
    value = {"name": "table", "dtype": "float32", "shape": [25, 3]}
    assert triton.tensor_config(value, False, "graph x input")["dims"] == [25, 3]
    with pytest.raises(
        triton.TritonExportError, match=r"^graph x input table: no leading batch axis; pass --max-batch 0$"
    ):
        triton.tensor_config(value, True, "graph x input")
    with pytest.raises(triton.TritonExportError, match="dtype 'complex64' has no Triton type"):
        triton.tensor_config({**value, "dtype": "complex64"}, False, "graph x input")


def test_rendered_text_round_trips_through_tritons_schema():
    config = {
        "name": "m",
        "platform": "onnxruntime_onnx",
        "max_batch_size": 2,
        "input": [{"name": 'quote"d', "data_type": triton.Symbol("TYPE_FP32"), "dims": [1], "reshape": {"shape": []}}],
        "dynamic_batching": {},
        "optimization": triton.tensorrt_accelerator("FP16"),
    }
    parsed = text_format.Parse(triton.render(config), model_config_pb2.ModelConfig())
    assert parsed.input[0].name == 'quote"d' and parsed.input[0].HasField("reshape")
    assert parsed.HasField("dynamic_batching") and parsed.max_batch_size == 2
