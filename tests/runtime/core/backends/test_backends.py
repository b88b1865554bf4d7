"""Choosing a backend: `auto` takes the fastest that runs here and says why the others did not."""

import re
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from runtime.core.backends import NAMES, BackendSettings, backends, load_runners
from runtime.core.backends.base import BackendError
from runtime.core.backends.ort import ORT_CPU
from runtime.core.bundle import load_bundle

ROLES = ("trajectory", "restoration", "sequence")


@pytest.fixture(scope="module")
def bundle(small_bundle):
    return load_bundle(small_bundle)


@pytest.mark.skipif(
    "CUDAExecutionProvider" in onnxruntime.get_available_providers(), reason="a GPU onnxruntime picks another backend"
)
def test_auto_takes_the_cpu_here_and_says_why(bundle):
    said = []
    name, runners = load_runners(bundle, ROLES, BackendSettings("auto"), log=said.append)
    assert name == "ort-cpu" and set(runners) == set(ROLES)
    assert all(runner.backend == "ort-cpu" for runner in runners.values())
    assert len(said) == 1 and said[0].startswith("backend: ort-cpu (auto); skipped ")
    # Each skipped backend by name with its reason (a reason may itself hold "; ").
    skipped = re.split(r"(?:; skipped |; )(tensorrt|ort-tensorrt|ort-cuda): ", said[0])[1:]
    assert skipped[0::2] == ["tensorrt", "ort-tensorrt", "ort-cuda"]
    assert all(len(reason) > 10 for reason in skipped[1::2])
    assert "has no CUDAExecutionProvider" in said[0]
    for runner in runners.values():
        runner.close()


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("auto", "ort-cpu")])
def test_an_explicit_backend_that_cannot_run_here_is_named(bundle, name):
    if next(b for b in backends() if b.name == name).unavailable_reason() is None:
        pytest.skip(f"{name} is available here")
    with pytest.raises(BackendError, match=f"^backend {name} cannot run here: .+") as error:
        load_runners(bundle, ROLES, BackendSettings(name), log=pytest.fail)
    assert "\n" not in str(error.value)


def test_an_unknown_backend_is_refused_with_the_choices(bundle):
    with pytest.raises(BackendError, match="unknown backend 'cuda': choose one of auto, tensorrt, .*ort-cpu"):
        load_runners(bundle, ROLES, BackendSettings("cuda"))


def test_onnxruntime_runs_only_the_precisions_the_bundle_holds(bundle):
    with pytest.raises(BackendError, match="ort-cpu runs the bundle's ONNX graphs, which it holds at fp32; for fp16"):
        load_runners(bundle, ROLES, BackendSettings("ort-cpu", "fp16"))


def test_a_runner_says_what_went_wrong_in_one_line(bundle):
    runner = ORT_CPU.load(bundle, "trajectory", "fp32")
    assert runner.input_names == ("image", "focal_length") and runner.output_names == ("trajectory",)
    image = np.zeros((1, 3, 40, 40), np.float32)
    assert runner.run({"image": image, "focal_length": np.float32([40])})["trajectory"].shape == (1, 25, 3)
    with pytest.raises(BackendError, match="^ort-cpu: .*INVALID_ARGUMENT") as error:
        runner.run({"image": image.astype(np.float64), "focal_length": np.float32([40])})
    assert "\n" not in str(error.value)
    runner.close()
    with pytest.raises(BackendError, match="ort-cpu runner used after close"):
        runner.run({"image": image, "focal_length": np.float32([40])})


def test_the_onnxruntime_thread_count_reaches_every_session(bundle):
    _, runners = load_runners(bundle, ROLES, BackendSettings("ort-cpu", threads=1))
    assert {role: r.session.get_session_options().intra_op_num_threads for role, r in runners.items()} == {
        role: 1 for role in ROLES
    }
    with pytest.raises(BackendError, match="threads must be at least 1"):
        load_runners(bundle, ROLES, BackendSettings("ort-cpu", threads=0))


def test_onnxruntime_sessions_do_not_spin_between_runs(bundle):
    _, runners = load_runners(bundle, ROLES, BackendSettings("ort-cpu", threads=2))
    for runner in runners.values():
        entries = runner.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
        assert entries == "0"


def resident_mib() -> float:
    """This process's resident memory now (not its peak)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_a_run_larger_than_a_tile_gives_its_memory_arena_back(bundle, monkeypatch):
    """The trajectory net runs on the whole image: on a large one its arena must not stay through the restoration."""
    from runtime.core.backends import ort

    image = np.random.default_rng(0).random((1, 3, 1536, 2048), np.float32)
    inputs = {"image": image, "focal_length": np.float32([2e3])}
    grown = {}
    for release in (False, True):
        monkeypatch.setattr(ort, "RELEASE_ARENA_ABOVE_PIXELS", 1024 * 1024 if release else 10**9)
        runner = ORT_CPU.load(bundle, "trajectory", "fp32")
        before = resident_mib()
        grown[release] = (runner.run(inputs)["trajectory"], resident_mib() - before)
        runner.close()
    print(f"resident memory after a 2048x1536 run: {grown[False][1]:.0f} MiB kept, {grown[True][1]:.0f} MiB released")
    assert np.array_equal(grown[False][0], grown[True][0])
    assert grown[False][1] > 150 and grown[True][1] < grown[False][1] / 3


def test_the_tensorrt_provider_keeps_its_caches_in_the_bundle_and_takes_the_profile(bundle_copy):
    from runtime.core.backends.ort import CACHE_DIRECTORY, execution_providers
    from runtime.core.bundle import load_bundle
    from runtime.core.profiles import load_build_profile

    bundle = load_bundle(bundle_copy)
    profile = load_build_profile(Path(__file__).resolve().parents[4] / "configs" / "build" / "jetson-orin-720p.yaml")
    (provider, options), *fallbacks = execution_providers("ort-tensorrt", bundle, "restoration", profile)
    assert provider == "TensorrtExecutionProvider" and fallbacks == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(bundle.path / CACHE_DIRECTORY)
    assert (bundle.path / CACHE_DIRECTORY).is_dir()
    assert options["trt_profile_min_shapes"] == "blurry:1x3x32x32,trajectory:1x25x3,intrinsics:1x3x3,sigma:1"
    assert options["trt_profile_opt_shapes"] == "blurry:1x3x720x1280,trajectory:1x25x3,intrinsics:1x3x3,sigma:1"
    assert options["trt_profile_max_shapes"] == "blurry:1x3x1280x1280,trajectory:1x25x3,intrinsics:1x3x3,sigma:1"
    assert load_bundle(bundle.path).path == bundle.path  # the cache folder leaves the sha256 table valid


# --- OpenVINO ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openvino_available():
    reason = next(b for b in backends() if b.name == "openvino").unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("bf16", 0.1)])
def test_openvino_runs_the_graphs_as_onnxruntime_does(bundle, openvino_available, precision, tolerance):
    from runtime.tools.feeds import graph_feeds

    feeds = graph_feeds(bundle, 48, 64)
    name, runners = load_runners(bundle, ROLES, BackendSettings("openvino", precision), log=pytest.fail)
    assert name == "openvino"
    for role in ROLES:
        expected = ORT_CPU.load(bundle, role, "fp32").run(feeds[role])
        got = runners[role].run(feeds[role])
        assert set(got) == set(expected)
        for output, value in expected.items():
            assert got[output].dtype == np.float32 and got[output].shape == value.shape
            assert np.abs(got[output] - value).max() <= tolerance * max(1.0, np.abs(value).max()), (role, output)
        runners[role].close()
    with pytest.raises(BackendError, match="used after close"):
        runners["trajectory"].run(feeds["trajectory"])


def test_openvino_refuses_a_precision_the_bundle_lacks(bundle, openvino_available):
    with pytest.raises(BackendError, match="openvino runs fp32, bf16 for this bundle, not int8-cpu"):
        load_runners(bundle, ROLES, BackendSettings("openvino", "int8-cpu"), log=pytest.fail)
