"""Engine records in the bundle manifest: finding them, and refusing one that does not fit this machine. No GPU."""

import json
from datetime import datetime, timezone

import pytest

from runtime.core import engines
from runtime.core.bundle import MANIFEST
from runtime.core.profiles import AxisRange, BuildProfile

ORIN = engines.Machine("10.3.0.30", "Orin", "8.7")
PROFILE = BuildProfile(
    "jetson-orin-720p",
    "fp16",
    {"batch": AxisRange(1, 1, 2), "height": AxisRange(32, 720, 1280), "width": AxisRange(32, 1280, 1280)},
    workspace_mib=1536,
)


@pytest.fixture(scope="module")
def manifest(small_bundle) -> dict:
    """The real manifest of the small bundle (no engines yet)."""
    return json.loads((small_bundle / MANIFEST).read_text())


def record(manifest, role="restoration", precision="fp16", machine=ORIN, **changes) -> engines.EngineRecord:
    built = engines.new_record(
        role,
        precision,
        machine,
        PROFILE,
        engines.graph_sha256(manifest, role),
        12.5,
        built=datetime(2026, 11, 1, tzinfo=timezone.utc),
    )
    return engines.record_from_manifest({**built.as_manifest(), **changes})


def test_a_new_record_holds_everything_the_design_asks_for(manifest):
    entry = record(manifest).as_manifest()
    assert entry["file"] == "restoration.fp16.engine"
    assert (entry["role"], entry["precision"]) == ("restoration", "fp16")
    assert (entry["tensorrt_version"], entry["gpu_name"], entry["compute_capability"]) == ("10.3.0.30", "Orin", "8.7")
    assert entry["profile"] == PROFILE.as_manifest()
    assert entry["onnx_sha256"] == manifest["files"]["restoration.onnx"]["sha256"]
    assert entry["built"] == "2026-11-01T00:00:00+00:00" and entry["build_seconds"] == 12.5
    assert json.loads(json.dumps(entry)) == entry  # plain JSON
    assert engines.record_from_manifest(entry) == record(manifest)


def test_records_are_found_by_role_and_precision_and_replaced_not_duplicated(manifest):
    assert manifest["engines"] == [] and engines.find_engine(manifest, "restoration", "fp16") is None
    first = engines.with_engine(manifest, record(manifest))
    both = engines.with_engine(first, record(manifest, precision="fp32"))
    rebuilt = engines.with_engine(both, record(manifest, build_seconds=3.0))
    assert manifest["engines"] == []  # the input is not changed
    assert [(e["role"], e["precision"]) for e in rebuilt["engines"]] == [
        ("restoration", "fp16"),
        ("restoration", "fp32"),
    ]
    assert engines.find_engine(rebuilt, "restoration", "fp16").build_seconds == 3.0
    assert engines.find_engine(rebuilt, "restoration", "fp32").file == "restoration.fp32.engine"
    assert engines.find_engine(rebuilt, "trajectory", "fp16") is None


@pytest.mark.parametrize(
    ("built_with", "running", "same"),
    [
        ("10.3.0.30", "10.3.0.26", True),  # the build number does not matter
        ("10.3.0", "10.3.0.30", True),
        ("8.6.2.3", "8.6.2", True),
        ("10.3.0.30", "10.4.0.26", False),
        ("8.6.1.6", "8.6.2.3", False),  # a patch release is another release
        ("10.13.0", "11.1.0", False),
        ("10.1", "10.1.0", True),
    ],
)
def test_engines_need_the_same_major_minor_patch(built_with, running, same):
    assert engines.same_release(built_with, running) is same


def test_an_engine_that_fits_is_accepted(manifest):
    with_it = engines.with_engine(manifest, record(manifest))
    found, reason = engines.check_engine(
        with_it, "restoration", "fp16", engines.Machine("10.3.0.26", "Orin", "8.7"), "b"
    )
    assert reason is None and found == record(manifest)


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        (engines.Machine("10.7.0.23", "Orin", "8.7"), "built with TensorRT 10.3.0.30, this machine has 10.7.0.23"),
        (engines.Machine("8.6.2.3", "Orin", "8.7"), "built with TensorRT 10.3.0.30, this machine has 8.6.2.3"),
        (
            engines.Machine("10.3.0.30", "NVIDIA GeForce RTX 4090", "8.9"),
            "built for compute capability 8.7 (Orin), this GPU is 8.9 (NVIDIA GeForce RTX 4090)",
        ),
        (engines.Machine("10.3.0.30", "NVIDIA A10", "8.7"), "built on GPU Orin, this GPU is NVIDIA A10"),
    ],
)
def test_an_engine_from_elsewhere_is_refused_with_a_rebuild_command(manifest, machine, expected):
    with_it = engines.with_engine(manifest, record(manifest))
    found, reason = engines.check_engine(with_it, "restoration", "fp16", machine, "runtime/bundles/demo")
    assert found is not None and reason is not None
    assert "\n" not in reason
    assert reason.startswith("runtime/bundles/demo/restoration.fp16.engine: ")
    assert expected in reason
    assert (
        "python -m export.tensorrt runtime/bundles/demo --precision fp16 --profile configs/build/jetson-orin-720p.yaml"
        in reason
    )
    assert "--rebuild" in reason and "python -m runtime.deblur" in reason


def test_an_engine_built_from_another_graph_is_refused(manifest):
    stale = record(manifest, onnx_sha256="0" * 64)
    reason = engines.mismatch_reason(stale, ORIN, engines.graph_sha256(manifest, "restoration"), "b")
    assert reason is not None and "built from another restoration graph" in reason


def test_every_mismatch_is_named_in_one_line(manifest):
    stale = record(manifest, onnx_sha256="0" * 64)
    reason = engines.mismatch_reason(stale, engines.Machine("11.1.0", "RTX", "12.0"), "f" * 64, "b")
    assert reason is not None and "\n" not in reason
    assert all(part in reason for part in ("TensorRT 10.3.0.30", "compute capability 8.7", "another restoration"))


def test_a_missing_engine_says_how_to_build_it(manifest):
    found, reason = engines.check_engine(manifest, "trajectory", "fp32", ORIN, "runtime/bundles/demo")
    assert found is None
    assert reason == (
        "runtime/bundles/demo: no fp32 TensorRT engine for the trajectory graph; build one: python -m export.tensorrt "
        "runtime/bundles/demo --precision fp32 --profile configs/build/PROFILE.yaml (or pass --rebuild to "
        "python -m runtime.deblur)"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"role": "refinement"}, "role 'refinement' is not one of"),
        ({"precision": "int4"}, "precision 'int4' is not one of"),
        ({"profile": {"name": "x"}}, "unreadable profile"),
        ({"typing": "loose"}, "typing 'loose'"),
    ],
)
def test_a_damaged_record_is_named(manifest, change, message):
    entry = {**record(manifest).as_manifest(), **change}
    with pytest.raises(engines.EngineRecordError, match=message):
        engines.record_from_manifest(entry)
    damaged = {**manifest, "engines": [entry]}
    found, reason = engines.check_engine(damaged, entry["role"], entry["precision"], ORIN, "b")
    assert found is None and reason is not None and message in reason


def test_a_record_missing_fields_is_refused(manifest):
    entry = record(manifest).as_manifest()
    del entry["gpu_name"], entry["onnx_sha256"]
    with pytest.raises(engines.EngineRecordError, match="lacks gpu_name, onnx_sha256"):
        engines.record_from_manifest(entry)


def test_the_recorded_profile_reads_back_as_a_build_profile(manifest):
    profile = record(manifest).build_profile
    assert profile.axes == PROFILE.axes and profile.workspace_mib == 1536
    assert profile.input_shapes(manifest["graphs"]["restoration"]["inputs"]) == PROFILE.input_shapes(
        manifest["graphs"]["restoration"]["inputs"]
    )


@pytest.mark.parametrize(
    ("batch", "height", "width", "inside"),
    [(1, 720, 1280, True), (2, 32, 32, True), (1, 1280, 720, True), (3, 720, 1280, False), (1, 16, 64, False)],
)
def test_shapes_inside_and_outside_the_engine_profile(manifest, batch, height, width, inside):
    engine = record(manifest)
    assert engine.covers(batch, height, width) is inside
    reason = engines.outside_reason(engine, {"batch": batch, "height": height, "width": width}, "b")
    assert (reason is None) is inside
    if not inside:
        assert "outside the engine's profile jetson-orin-720p" in reason
        assert "resize or tile the input (--tile-side 1280 or less)" in reason
        # The trajectory net is never tiled: its remedy is a shrunk copy.
        trajectory_engine = record(manifest, role="trajectory")
        reason = engines.outside_reason(trajectory_engine, {"batch": batch, "height": height, "width": width}, "b")
        assert "run the trajectory net on a shrunk copy (--estimation-side 1280 or less)" in reason


def test_axis_sizes_are_read_through_the_manifest_dims(manifest):
    inputs = manifest["graphs"]["restoration"]["inputs"]
    shapes = {"blurry": (2, 3, 48, 40), "trajectory": (2, 25, 3), "intrinsics": (2, 3, 3), "sigma": (2,)}
    assert engines.axis_sizes(inputs, shapes) == {"batch": 2, "height": 48, "width": 40}
    with pytest.raises(ValueError, match="another input has 2"):
        engines.axis_sizes(inputs, {**shapes, "sigma": (1,)})
    with pytest.raises(ValueError, match="expected"):
        engines.axis_sizes(inputs, {**shapes, "trajectory": (2, 24, 3)})
    with pytest.raises(ValueError, match="no shape given for input intrinsics"):
        engines.axis_sizes(inputs, {k: v for k, v in shapes.items() if k != "intrinsics"})
