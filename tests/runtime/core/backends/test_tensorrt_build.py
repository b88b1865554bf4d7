"""TensorRT engines: what can be checked without a GPU runs everywhere; the rest is marked `gpu` and skips here.

Without a GPU: the optimisation-profile shapes, the FP32 geometry island on the real graphs (and on a stand-in
TensorRT network made from them), the command line's errors, the refusal of a mismatched engine, and the
runner's buffer handling against a stand-in TensorRT engine and cuda-python whose "device memory" is host memory.
"""

from __future__ import annotations

import ctypes
import enum
import json
import math
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest

from runtime.core import engines
from runtime.core.backends import tensorrt as trt_backend
from runtime.core.backends import tensorrt_build as build
from runtime.core.backends.base import BackendError
from runtime.core.backends.fp32_island import GraphNode, geometry_island
from runtime.core.bundle import MANIFEST, load_bundle, write_manifest
from runtime.core.profiles import load_build_profile

ROOT = Path(__file__).resolve().parents[4]
PROFILE_TEXT = """\
precision: fp32
batch: {min: 1, opt: 1, max: 2}
height: {min: 32, opt: 64, max: 96}
width: {min: 32, opt: 64, max: 96}
workspace_mib: 512
builder_optimization_level: 2
"""


@pytest.fixture
def profile_path(tmp_path) -> Path:
    path = tmp_path / "small-test.yaml"
    path.write_text(PROFILE_TEXT)
    return path


# --- Optimisation-profile shapes. --------------------------------------------------------------------------------


def test_the_build_profile_becomes_one_optimisation_profile_per_graph(small_bundle, profile_path):
    manifest = load_bundle(small_bundle).manifest
    profile = load_build_profile(profile_path)
    restoration = build.optimisation_shapes(manifest, "restoration", profile)
    assert restoration == {
        "blurry": ((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 96, 96)),
        "trajectory": ((1, 25, 3), (1, 25, 3), (2, 25, 3)),
        "intrinsics": ((1, 3, 3), (1, 3, 3), (2, 3, 3)),
        "sigma": ((1,), (1,), (2,)),
    }
    assert build.optimisation_shapes(manifest, "trajectory", profile) == {
        "image": ((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 96, 96)),
        "focal_length": ((1,), (1,), (2,)),
    }
    assert set(build.optimisation_shapes(manifest, "sequence", profile)) == {"sharp", "trajectory", "intrinsics"}


def test_a_profile_below_the_bundles_minimum_side_is_refused(small_bundle, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(PROFILE_TEXT.replace("height: {min: 32", "height: {min: 16"))
    with pytest.raises(build.BuildError, match="profile tiny: height min 16 is below the bundle's min_side 32"):
        build.optimisation_shapes(load_bundle(small_bundle).manifest, "restoration", load_build_profile(path))


def test_the_shipped_profiles_fit_the_bundle(small_bundle):
    manifest = load_bundle(small_bundle).manifest
    for path in sorted((ROOT / "configs" / "build").glob("*.yaml")):
        profile = load_build_profile(path)
        for role in engines.ROLES:
            shapes = build.optimisation_shapes(manifest, role, profile)
            assert all(len(low) == len(high) for low, _, high in shapes.values())


def test_roles_are_parsed_in_bundle_order():
    assert build.parse_roles(None) == ["trajectory", "restoration", "sequence", "refine"]
    assert build.parse_roles("sequence, trajectory") == ["trajectory", "sequence"]
    with pytest.raises(build.BuildError, match="unknown role refinement"):
        build.parse_roles("restoration,refinement")


def test_the_refine_graph_is_built_in_fp32_only(small_bundle, profile_path):
    with pytest.raises(build.BuildError, match="the refine graph runs in FP32 only; build it with --precision fp32"):
        build.build_engines(small_bundle, profile_path, "fp16", roles="restoration,refine", log=lambda *_: None)


def test_int8_engines_need_calibrated_graphs_that_passed_their_gate(small_bundle, bundle_copy, profile_path):
    with pytest.raises(build.BuildError, match="no int8-tensorrt graphs to build int8 engines from; first run "):
        build.build_engines(small_bundle, profile_path, "int8", log=lambda *_: None)
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    (bundle_copy / "restoration.int8-tensorrt.onnx").write_bytes((bundle_copy / "restoration.onnx").read_bytes())
    gate = {"passed": False, "summary": "restored PSNR vs sharp 30.00 -> 28.00 dB, loss 2.00 dB (max 0.5)"}
    variant = {"graphs": {"restoration": "restoration.int8-tensorrt.onnx"}, "gate": gate}
    write_manifest(bundle_copy, {**manifest, "precisions": {"int8-tensorrt": variant}})
    with pytest.raises(build.BuildError, match="failed their accuracy gate .*loss 2.00 dB.*; recalibrate"):
        build.build_engines(bundle_copy, profile_path, "int8", log=lambda *_: None)


def test_an_int8_engine_is_tied_to_the_calibrated_graph_it_is_built_from(small_bundle):
    manifest = load_bundle(small_bundle).manifest
    files = {**manifest["files"], "restoration.int8-tensorrt.onnx": {"sha256": "ab" * 32, "bytes": 1}}
    variant = {"graphs": {"restoration": "restoration.int8-tensorrt.onnx"}, "gate": {"passed": True}}
    calibrated = {**manifest, "files": files, "precisions": {"int8-tensorrt": variant}}
    assert engines.source_graph(calibrated, "restoration", "int8") == "restoration.int8-tensorrt.onnx"
    assert engines.graph_sha256(calibrated, "restoration", "int8") == "ab" * 32
    assert engines.source_graph(calibrated, "sequence", "int8") == "sequence.onnx"  # no weights: the FP32 graph
    assert engines.source_graph(calibrated, "restoration", "fp16") == "restoration.onnx"
    assert engines.graph_sha256(calibrated, "restoration") == manifest["files"]["restoration.onnx"]["sha256"]


def test_the_timing_cache_is_kept_per_release_and_gpu_outside_the_sha256_table(tmp_path):
    path = build.timing_cache_path(tmp_path, engines.Machine("10.3.0.30", "Orin (nvgpu)", "8.7"))
    assert path == tmp_path / "tensorrt-cache" / "timing-trt10.3.0.30-orin--nvgpu-sm8.7.cache"


# --- The FP32 geometry island. -----------------------------------------------------------------------------------


def node(name, kind, inputs, outputs):
    return GraphNode(name, kind, tuple(inputs), tuple(outputs))


def test_the_island_is_the_gridsample_and_what_computes_its_grid():
    nodes = [
        node("rot", "Sin", ["trajectory"], ["r"]),
        node("size", "Shape", ["image"], ["hw"]),
        node("grid", "Mul", ["r", "hw"], ["g"]),
        node("prior", "Conv", ["image", "w"], ["x"]),
        node("sample", "GridSample", ["x", "g"], ["y"]),
        node("after", "Relu", ["y"], ["z"]),
    ]
    assert geometry_island(nodes) == {0, 1, 2, 4}  # not the prior feeding the image input, not what follows


def test_the_walk_stops_at_shape_of_so_the_image_path_stays_out():
    nodes = [
        node("prior", "Conv", ["image", "w"], ["x"]),
        node("size", "Shape", ["x"], ["hw"]),  # the grid depends on x's size only
        node("grid", "Div", ["hw", "two"], ["g"]),
        node("sample", "GridSample", ["x", "g"], ["y"]),
    ]
    assert geometry_island(nodes) == {1, 2, 3}


def test_a_graph_without_gridsample_has_no_island():
    assert geometry_island([node("a", "Conv", ["x", "w"], ["y"]), node("b", "Relu", ["y"], ["z"])]) == set()


def onnx_graph_nodes(path: Path) -> tuple[onnx.ModelProto, list[GraphNode]]:
    from calibration.fp16 import onnx_nodes

    model = onnx.load(str(path))
    return model, onnx_nodes(model.graph)


def test_the_restoration_island_holds_the_geometry_and_none_of_the_networks(small_bundle):
    model, nodes = onnx_graph_nodes(small_bundle / "restoration.onnx")
    island = [model.graph.node[index] for index in geometry_island(nodes)]
    kinds = {n.op_type for n in island}
    assert sum(n.op_type == "GridSample" for n in model.graph.node) == 6
    assert sum(n.op_type == "GridSample" for n in island) == 6
    assert {"Sin", "Cos", "MatMul"} <= kinds  # Rodrigues and the homographies
    assert not kinds & {"Conv", "ConvTranspose", "Relu", "Softplus"}  # no prior, no HyPaNet
    reached = {name for n in island for name in n.input} & {v.name for v in model.graph.input}
    assert reached == {"trajectory", "intrinsics", "blurry"}
    # The image reaches the island only as the size the grid needs and as the pixels GridSample samples.
    assert {n.op_type for n in island if "blurry" in n.input} == {"Shape", "GridSample"}
    assert all(n.input[0] == "blurry" for n in island if n.op_type == "GridSample" and "blurry" in n.input)


def test_the_sequence_island_and_the_trajectory_graph(small_bundle):
    model, nodes = onnx_graph_nodes(small_bundle / "sequence.onnx")
    island = [model.graph.node[index] for index in geometry_island(nodes)]
    assert {"GridSample", "Sin", "Cos"} <= {n.op_type for n in island}
    assert not {"ReduceMean"} & {n.op_type for n in island}  # the mean of the frames is not geometry
    _, trajectory_nodes = onnx_graph_nodes(small_bundle / "trajectory.onnx")
    assert geometry_island(trajectory_nodes) == set()


# A stand-in TensorRT network built from an ONNX graph: one layer per node, with the tensor dtypes ONNX infers.


class FakeTensor:
    def __init__(self, name: str, dtype: str) -> None:
        self.name, self.dtype = name, dtype


class FakeLayer:
    def __init__(self, name: str, kind: str, inputs: list[FakeTensor | None], outputs: list[FakeTensor]) -> None:
        self.name, self.type, self._inputs, self._outputs = name, kind, inputs, outputs
        self.precision: str | None = None
        self.output_types: dict[int, str] = {}

    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))

    def get_input(self, index):
        return self._inputs[index]

    def get_output(self, index):
        return self._outputs[index]

    def set_output_type(self, index, dtype):
        self.output_types[index] = dtype


class FakeNetwork:
    def __init__(self, model: onnx.ModelProto) -> None:
        inferred = onnx.shape_inference.infer_shapes(model)
        values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
        floats = {v.name for v in values if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
        floats |= {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
        kinds = {"GridSample": "GRID_SAMPLE", "Shape": "SHAPE"}

        def tensor(name):
            return FakeTensor(name, "float32" if name in floats else "int64") if name else None

        self.layers = [
            FakeLayer(
                n.name, kinds.get(n.op_type, n.op_type), [tensor(i) for i in n.input], [tensor(o) for o in n.output]
            )
            for n in model.graph.node
        ]

    num_layers = property(lambda self: len(self.layers))

    def get_layer(self, index):
        return self.layers[index]


@pytest.fixture
def fake_tensorrt(monkeypatch):
    """`import tensorrt` gives a stand-in with the few names the island code reads."""
    module = types.ModuleType("tensorrt")
    module.LayerType = types.SimpleNamespace(GRID_SAMPLE="GRID_SAMPLE", SHAPE="SHAPE")
    module.float32 = "float32"
    module.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    module.nptype = np.dtype
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


def test_fp16_builds_pin_the_islands_float_layers_of_a_tensorrt_network(small_bundle, fake_tensorrt):
    model = onnx.load(str(small_bundle / "restoration.onnx"))
    network = FakeNetwork(model)
    pinned = build.pin_geometry_fp32(network)
    island = geometry_island([GraphNode(n.name, n.op_type, tuple(n.input), tuple(n.output)) for n in model.graph.node])
    expected = {
        network.layers[i].name
        for i in island
        if any(network.layers[i].get_output(j).dtype == "float32" for j in range(network.layers[i].num_outputs))
    }
    got = {layer.name for layer in network.layers if layer.precision == "float32"}
    assert got == expected and pinned == len(expected)
    assert sum(layer.type == "GRID_SAMPLE" and layer.precision == "float32" for layer in network.layers) == 6
    for layer in network.layers:
        if layer.precision is None:
            assert not layer.output_types
        else:
            assert layer.output_types == {
                j: "float32" for j in range(layer.num_outputs) if layer.get_output(j).dtype == "float32"
            }
        if layer.type in ("Conv", "ConvTranspose", "SHAPE"):
            assert layer.precision is None  # the prior runs in FP16; shape layers compute integers


# --- Command line and errors, here where TensorRT is absent. -----------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "export.tensorrt", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_the_cli_refuses_a_missing_bundle_in_one_line(tmp_path, profile_path):
    result = run_cli(str(tmp_path / "nowhere"), "--profile", str(profile_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'nowhere'}: not a bundle directory"]


def test_the_cli_refuses_an_invalid_profile_in_one_line(bundle_copy, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("precision: fp8\nbatch: {min: 1, opt: 1, max: 1}\n")
    result = run_cli(str(bundle_copy), "--profile", str(broken))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {broken}: precision 'fp8' is not one of fp32, fp16, int8"]


def test_the_cli_refuses_unknown_roles(bundle_copy, profile_path):
    result = run_cli(str(bundle_copy), "--profile", str(profile_path), "--roles", "restoration,refinement")
    assert result.returncode == 2 and "unknown role refinement" in result.stderr


def test_the_cli_says_when_tensorrt_is_missing(bundle_copy, profile_path):
    if trt_backend.unavailable_reason() is None:
        pytest.skip("TensorRT and a GPU are present here")
    before = (bundle_copy / MANIFEST).read_text()
    result = run_cli(str(bundle_copy), "--profile", str(profile_path), "--precision", "fp16")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot build TensorRT engines here: ")
    assert "TensorRT" in lines[0] or "cuda-python" in lines[0] or "CUDA" in lines[0]
    assert (bundle_copy / MANIFEST).read_text() == before and not list(bundle_copy.glob("*.engine"))


def test_the_backend_reports_why_it_cannot_run_here():
    reason = trt_backend.unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT and a GPU are present here")
    assert isinstance(reason, str) and "\n" not in reason
    assert trt_backend.BACKEND.name == "tensorrt" and trt_backend.BACKEND.unavailable_reason() == reason


# --- Refusing a mismatched engine before TensorRT sees it. --------------------------------------------------------


def add_engine_record(bundle: Path, machine: engines.Machine, profile_path: Path) -> None:
    """A (dummy) restoration fp32 engine file and its manifest record, as if built on `machine`."""
    loaded = load_bundle(bundle)
    (bundle / "restoration.fp32.engine").write_bytes(b"not an engine")
    record = engines.new_record(
        "restoration",
        "fp32",
        machine,
        load_build_profile(profile_path),
        engines.graph_sha256(loaded.manifest, "restoration"),
        1.0,
    )
    write_manifest(bundle, engines.with_engine(loaded.manifest, record))


def test_an_engine_of_another_tensorrt_release_is_refused_before_loading(bundle_copy, profile_path, monkeypatch):
    add_engine_record(bundle_copy, engines.Machine("8.6.2.3", "Orin", "8.7"), profile_path)
    monkeypatch.setattr(trt_backend, "unavailable_reason", lambda: None)
    monkeypatch.setattr(trt_backend, "current_machine", lambda: engines.Machine("10.3.0.30", "Orin", "8.7"))
    with pytest.raises(BackendError) as error:
        trt_backend.load(load_bundle(bundle_copy), "restoration", "fp32")
    message = str(error.value)
    assert "built with TensorRT 8.6.2.3, this machine has 10.3.0.30" in message
    assert (
        f"python -m export.tensorrt {bundle_copy} --precision fp32 --profile configs/build/small-test.yaml" in message
    )
    with pytest.raises(BackendError, match="no fp16 TensorRT engine for the restoration graph"):
        trt_backend.load(load_bundle(bundle_copy), "restoration", "fp16")


def test_rebuild_builds_only_stale_engines_with_the_profile_they_were_built_with(
    bundle_copy, profile_path, monkeypatch
):
    """--rebuild: the engine of another TensorRT release is rebuilt with its recorded profile; a missing one
    needs --profile; one that fits is left alone."""
    here = engines.Machine("10.3.0.30", "Orin", "8.7")
    add_engine_record(bundle_copy, engines.Machine("8.6.2.3", "Orin", "8.7"), profile_path)
    monkeypatch.setattr(trt_backend, "current_machine", lambda: here)
    builds = []

    def record_build(bundle_path, profile, precision, roles, log):
        builds.append((Path(bundle_path), profile.name, precision, list(roles)))
        add_engine_record(Path(bundle_path), here, profile_path)
        return []

    monkeypatch.setattr(build, "build_engines", record_build)
    loaded = build.rebuild_stale(load_bundle(bundle_copy), ["restoration"], "fp32", log=lambda _: None)
    assert builds == [(bundle_copy, "small-test", "fp32", ["restoration"])]
    assert engines.find_engine(loaded.manifest, "restoration", "fp32").tensorrt_version == "10.3.0.30"
    assert build.rebuild_stale(loaded, ["restoration"], "fp32", log=lambda _: None) is loaded
    assert len(builds) == 1
    with pytest.raises(BackendError, match="--rebuild needs --profile for an engine that was never built"):
        build.rebuild_stale(loaded, ["trajectory"], "fp32", log=lambda _: None)


# --- The runner against a stand-in engine and cuda-python ("device" memory is host memory). ----------------------


class FakeCudart:
    class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's names
        cudaSuccess = 0
        cudaErrorMemoryAllocation = 2

    class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.mallocs = 0
        self.fail_malloc = False
        self.streams = 0

    def cudaMalloc(self, size):  # noqa: N802
        if self.fail_malloc:
            return (self.cudaError_t.cudaErrorMemoryAllocation, 0)
        block = np.zeros(size, np.uint8)
        self.memory[block.ctypes.data] = block
        self.mallocs += 1
        return (self.cudaError_t.cudaSuccess, block.ctypes.data)

    def cudaFree(self, pointer):  # noqa: N802
        del self.memory[pointer]
        return (self.cudaError_t.cudaSuccess,)

    def cudaStreamCreate(self):  # noqa: N802
        self.streams += 1
        return (self.cudaError_t.cudaSuccess, 7)

    def cudaStreamDestroy(self, stream):  # noqa: N802
        self.streams -= 1
        return (self.cudaError_t.cudaSuccess,)

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (self.cudaError_t.cudaSuccess,)

    def cudaMemcpyAsync(self, destination, source, count, kind, stream):  # noqa: N802
        ctypes.memmove(destination, source, count)
        return (self.cudaError_t.cudaSuccess,)


class FakeContext:
    """y = 2 x + 1 over whatever the bound addresses hold."""

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.shapes["x"]

    def set_tensor_address(self, name, pointer):
        self.addresses[name] = pointer
        return True

    def execute_async_v3(self, stream):
        count = math.prod(self.shapes["x"])
        x = np.ctypeslib.as_array((ctypes.c_float * count).from_address(self.addresses["x"]))
        y = np.ctypeslib.as_array((ctypes.c_float * count).from_address(self.addresses["y"]))
        y[:] = 2 * x + 1
        return True


class FakeEngine:
    num_io_tensors = 2

    def get_tensor_name(self, index):
        return ("x", "y")[index]

    def get_tensor_mode(self, name):
        return "INPUT" if name == "x" else "OUTPUT"

    def get_tensor_dtype(self, name):
        return "float32"

    def create_execution_context(self):
        return FakeContext()


@pytest.fixture
def runner(monkeypatch, fake_tensorrt, profile_path):
    cudart = FakeCudart()
    monkeypatch.setattr(trt_backend, "require_tensorrt", lambda: None)
    monkeypatch.setattr(trt_backend, "import_cudart", lambda: cudart)
    record = engines.new_record(
        "restoration", "fp32", engines.Machine("10.3.0", "GPU", "8.9"), load_build_profile(profile_path), "0", 1.0
    )
    inputs = [{"name": "x", "dtype": "float32", "shape": ["batch", 3, "height", "width"]}]
    runner = trt_backend.TensorRTRunner(object(), FakeEngine(), record, inputs, "b")
    yield runner, cudart
    runner.close()


def test_the_runner_copies_in_executes_and_copies_out(runner):
    runner, _ = runner
    assert runner.input_names == ("x",) and runner.output_names == ("y",)
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    y = runner.run({"x": x})["y"]
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_array_equal(y, 2 * x + 1)


def test_device_buffers_are_reused_for_a_smaller_frame_and_grown_for_a_larger(runner):
    runner, cudart = runner
    large = np.ones((1, 3, 64, 64), np.float32)
    runner.run({"x": large})
    capacity, mallocs = runner.capacity, cudart.mallocs
    assert capacity == {"x": 64 * 64 * 3 * 4, "y": 64 * 64 * 3 * 4} and mallocs == 2
    small = np.full((1, 3, 40, 48), 2.0, np.float32)
    np.testing.assert_array_equal(runner.run({"x": small})["y"], np.full((1, 3, 40, 48), 5.0, np.float32))
    assert runner.capacity == capacity and cudart.mallocs == mallocs  # reused
    runner.run({"x": np.ones((2, 3, 96, 96), np.float32)})
    assert runner.capacity["x"] == 2 * 3 * 96 * 96 * 4 and cudart.mallocs == mallocs + 2
    assert len(cudart.memory) == 2  # the old buffers were freed


def test_a_frame_outside_the_engine_profile_is_refused_with_the_range(runner):
    runner, _ = runner
    with pytest.raises(BackendError, match=r"height 128 not in 32\.\.96"):
        runner.run({"x": np.ones((1, 3, 128, 64), np.float32)})


def test_a_failing_cuda_call_is_named(runner):
    runner, cudart = runner
    cudart.fail_malloc = True
    with pytest.raises(BackendError, match="cudaMalloc failed: cudaErrorMemoryAllocation"):
        runner.run({"x": np.ones((1, 3, 64, 64), np.float32)})


def test_close_frees_everything_once(runner):
    runner, cudart = runner
    runner.run({"x": np.ones((1, 3, 32, 32), np.float32)})
    runner.close()
    runner.close()
    assert cudart.memory == {} and cudart.streams == 0
    with pytest.raises(BackendError, match="used after close"):
        runner.run({"x": np.ones((1, 3, 32, 32), np.float32)})


# --- On a GPU with TensorRT: build, compare with onnxruntime CPU, reuse buffers, refuse another release. --------

#: Max abs difference TensorRT vs onnxruntime CPU. FP32 runs with TF32 off. The FP16 bounds are looser and have
#: not been measured on hardware yet; calibration.fp16's graph on onnxruntime CPU differs by 3.0e-4 (restored).
#: The refine graph on TensorRT FP32 vs onnxruntime CPU, relative: TF32 is off, so only summation order differs.
REFINE_RELATIVE_TOLERANCE = {"loss": 1e-4, "gradient": 1e-3}
GPU_TOLERANCE = {
    "fp32": {"trajectory": 1e-4, "restored": 1e-3, "frames": 1e-3, "reblurred": 1e-3},
    "fp16": {"trajectory": 2e-3, "restored": 1e-2, "frames": 1e-2, "reblurred": 1e-2},
}


@pytest.fixture(scope="module")
def gpu_bundle(small_bundle, tmp_path_factory) -> Path:
    reason = trt_backend.unavailable_reason()
    if reason is not None:
        pytest.skip(f"needs TensorRT, cuda-python and a CUDA GPU: {reason}")
    directory = tmp_path_factory.mktemp("tensorrt")
    bundle = Path(shutil.copytree(small_bundle, directory / "bundle"))
    profile = directory / "small-test.yaml"
    profile.write_text(PROFILE_TEXT)
    for precision in ("fp32", "fp16"):
        build.build_engines(bundle, profile, precision, log=lambda *_: None)
    return bundle


def example(role: str, batch: int, height: int, width: int) -> dict[str, np.ndarray]:
    from export.graphs import GRAPHS, example_inputs
    from export.refine import example_refine_inputs

    if role == "refine":
        return {name: value.numpy() for name, value in example_refine_inputs(batch, height, width, 25, 3).items()}
    spec = next(spec for spec in GRAPHS if spec.role == role)
    return {name: value.numpy() for name, value in example_inputs(spec, batch, height, width, 25, seed=3).items()}


@pytest.mark.gpu
def test_engines_are_recorded_in_the_manifest(gpu_bundle):
    loaded = load_bundle(gpu_bundle)
    found = {(entry["role"], entry["precision"]) for entry in loaded.manifest["engines"]}
    fp16 = [role for role in engines.ROLES if role not in engines.FP32_ONLY_ROLES]
    assert found == {(role, "fp32") for role in engines.ROLES} | {(role, "fp16") for role in fp16}
    machine = trt_backend.current_machine()
    for role in fp16:
        _, reason = engines.check_engine(loaded.manifest, role, "fp16", machine, str(gpu_bundle))
        assert reason is None


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("role", engines.ROLES)
def test_native_tensorrt_matches_onnxruntime_cpu(gpu_bundle, role, precision):
    from runtime.core.backends.ort import ORT_CPU

    if precision != "fp32" and role in engines.FP32_ONLY_ROLES:
        pytest.skip(f"the {role} graph runs in FP32 only")
    loaded = load_bundle(gpu_bundle)
    inputs = example(role, 2, 70, 52)
    reference = ORT_CPU.load(loaded, role, "fp32").run(inputs)
    runner = trt_backend.load(loaded, role, precision)
    try:
        outputs = runner.run(inputs)
    finally:
        runner.close()
    for name, expected in reference.items():
        error = float(np.abs(outputs[name] - expected).max())
        if name in REFINE_RELATIVE_TOLERANCE:  # loss and gradient: relative to their largest magnitude
            error /= max(float(np.abs(expected).max()), 1e-30)
            assert error <= REFINE_RELATIVE_TOLERANCE[name], f"{role} {name}: {error:.2e} (relative)"
            continue
        assert error <= GPU_TOLERANCE[precision][name], f"{role} {precision} {name}: {error:.2e}"


@pytest.mark.gpu
def test_a_smaller_frame_after_a_larger_one_reuses_device_buffers(gpu_bundle):
    from runtime.core.backends.ort import ORT_CPU

    loaded = load_bundle(gpu_bundle)
    runner = trt_backend.load(loaded, "restoration", "fp32")
    try:
        runner.run(example("restoration", 1, 96, 80))
        capacity = runner.capacity
        small = example("restoration", 1, 48, 40)
        restored = runner.run(small)["restored"]
        assert runner.capacity == capacity
        expected = ORT_CPU.load(loaded, "restoration", "fp32").run(small)["restored"]
        assert restored.shape == (1, 3, 48, 40)
        assert float(np.abs(restored - expected).max()) <= GPU_TOLERANCE["fp32"]["restored"]
    finally:
        runner.close()


@pytest.mark.gpu
def test_an_engine_recorded_for_another_tensorrt_version_is_refused(gpu_bundle, tmp_path):
    bundle = Path(shutil.copytree(gpu_bundle, tmp_path / "bundle"))
    manifest = json.loads((bundle / MANIFEST).read_text())
    for entry in manifest["engines"]:
        entry["tensorrt_version"] = "1.0.0"
    write_manifest(bundle, manifest)
    with pytest.raises(BackendError, match=r"built with TensorRT 1\.0\.0, this machine has"):
        trt_backend.load(load_bundle(bundle), "restoration", "fp32")
