import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from export import onnx as exporter
from export.graphs import GRAPHS, example_inputs
from export.lint import lint_path
from models.checkpoint import load_restoration_net, load_trajectory_net, save_checkpoint
from runtime.core.bundle import file_sha256, load_bundle
from tests.conftest import OFFICIAL, shared_file

SHAPES = [(1, 64, 64), (1, 75, 53), (2, 48, 72)]  # square; portrait and not a multiple of 8; batch 2


def run_graph(bundle, role, inputs):
    session = onnxruntime.InferenceSession(str(bundle / f"{role}.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {name: value.numpy() for name, value in inputs.items()})


@pytest.mark.parametrize("batch, height, width", SHAPES)
@pytest.mark.parametrize("spec", GRAPHS, ids=lambda spec: spec.role)
def test_onnxruntime_matches_pytorch(small_bundle, small_nets, spec, batch, height, width):
    """Tolerances: trajectory 1e-5 rad, restored 1e-4, frames and reblurred 1e-5."""
    inputs = example_inputs(spec, batch, height, width, n_positions=25, seed=batch * height)
    with torch.no_grad():
        expected = spec.build(*small_nets)(*inputs.values())
    expected = expected if isinstance(expected, tuple) else (expected,)
    for name, got, want in zip(spec.outputs, run_graph(small_bundle, spec.role, inputs), expected, strict=True):
        assert got.shape == tuple(want.shape)
        assert np.abs(got - want.numpy()).max() <= exporter.TOLERANCES[name], name


def test_the_bundle_passes_the_lint_for_the_oldest_tensorrt(small_bundle):
    assert lint_path(small_bundle, "8.5") == []


def test_manifest_describes_the_bundle(small_bundle):
    manifest = json.loads((small_bundle / "manifest.json").read_text())
    assert manifest["opset"] == 17 and manifest["tensorrt_min_version"] == "8.5"
    assert manifest["architecture"]["restoration"] == {"n_iter": 2, "h_nc": 8, "nc": [4, 8, 8, 16], "nb": 1}
    restoration = manifest["graphs"]["restoration"]
    assert [value["name"] for value in restoration["inputs"]] == ["blurry", "trajectory", "intrinsics", "sigma"]
    assert restoration["inputs"][0] == {"name": "blurry", "dtype": "float32", "shape": ["batch", 3, "height", "width"]}
    assert manifest["graphs"]["sequence"]["outputs"][0]["shape"] == ["batch", 25, 3, "height", "width"]
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == file_sha256(small_bundle / name)
    errors, tolerances = manifest["parity"]["max_abs_error"], manifest["parity"]["tolerance"]
    assert set(errors) == {"trajectory", "restored", "frames", "reblurred"}
    assert all(errors[name] <= tolerances[name] for name in errors)
    assert set(manifest["tools"]) >= {"torch", "onnx", "onnxruntime"}
    refine = manifest["graphs"]["refine"]  # exported with the nets' graphs
    assert refine["file"] == "refine.onnx" and refine["file"] in manifest["files"]
    assert [value["name"] for value in refine["inputs"]] == ["blurry", "latent", "trajectory", "intrinsics", "mask"]
    assert [value["name"] for value in refine["outputs"]] == ["loss", "gradient"]
    assert set(manifest["parity"]["refine_relative_error"]) == {"loss", "gradient"}


def test_prior_weights_are_stored_once_although_the_prior_runs_three_times(small_bundle, small_nets):
    initializers = [
        onnx.numpy_helper.to_array(t) for t in onnx.load(small_bundle / "restoration.onnx").graph.initializer
    ]
    for name, parameter in small_nets[1].p.named_parameters():
        copies = sum(a.shape == parameter.shape and np.array_equal(a, parameter.detach().numpy()) for a in initializers)
        assert copies == 1, name


def test_an_authors_checkpoint_bundle_reproduces_their_restoration(case_b, tmp_path):
    """As close as the PyTorch reference: max 1.08e-4, mean 6.3e-7 against the authors' `restored`."""
    trajectory_file = shared_file("fixtures/official/case_b_trajectory_state.pt")
    restoration_file = OFFICIAL / "case_b_restoration_state.pt"
    bundle = exporter.export_bundle(
        load_trajectory_net(trajectory_file), load_restoration_net(restoration_file), tmp_path / "b", log=print
    )
    trajectory = run_graph(
        bundle,
        "trajectory",
        {"image": torch.from_numpy(case_b["blurry_input"]), "focal_length": torch.from_numpy(case_b["f"])},
    )[0]
    assert np.abs(trajectory - case_b["positions"][:, case_b["sort_order"]]).max() <= 1e-5
    inputs = {
        name: torch.from_numpy(case_b[key])
        for name, key in (("blurry", "blurred"), ("trajectory", "trajectory"), ("intrinsics", "intrinsics"))
    }
    inputs["sigma"] = torch.from_numpy(case_b["sigma"]).reshape(1)
    restored = run_graph(bundle, "restoration", inputs)[0]
    with torch.no_grad():
        reference = load_restoration_net(restoration_file)(*inputs.values()).numpy()
    ours, theirs = np.abs(restored - case_b["restored"]), np.abs(reference - case_b["restored"])
    assert ours.max() <= 5e-4 and ours.mean() <= 5e-6
    assert abs(ours.max() - theirs.max()) <= 1e-5 and abs(ours.mean() - theirs.mean()) <= 1e-7


@pytest.mark.slow
def test_dynamo_exporter_at_opset_18(small_nets, tmp_path):
    bundle = exporter.export_bundle(*small_nets, tmp_path / "b18", opset=18, log=lambda *_: None)
    manifest = load_bundle(bundle).manifest
    assert (manifest["opset"], manifest["exporter"], manifest["tensorrt_min_version"]) == (18, "dynamo", "10.0")
    assert lint_path(bundle, "10.0") == []
    assert lint_path(bundle, "8.6") != []


def test_opset_20_is_refused_for_its_gridsample_spelling(small_nets, tmp_path):
    with pytest.raises(exporter.ExportError, match="opset 20 not supported"):
        exporter.export_bundle(*small_nets, tmp_path / "b", opset=20)
    assert list(tmp_path.iterdir()) == []


def test_failed_parity_leaves_no_half_bundle(small_nets, tmp_path, monkeypatch):
    monkeypatch.setitem(exporter.TOLERANCES, "restored", 0.0)
    with pytest.raises(exporter.ExportError, match="restoration.onnx: onnxruntime differs from PyTorch: restored"):
        exporter.export_bundle(*small_nets, tmp_path / "b", log=lambda *_: None)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_bundle_is_replaced_only_when_asked(bundle_copy, small_nets, tmp_path):
    (bundle_copy / "stale.txt").write_text("from an older export")
    with pytest.raises(exporter.ExportError, match="already exists; pass --force"):
        exporter.export_bundle(*small_nets, bundle_copy)
    exporter.export_bundle(*small_nets, bundle_copy, overwrite=True, log=lambda *_: None)
    assert not (bundle_copy / "stale.txt").exists() and load_bundle(bundle_copy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def _snapshot(folder):
    """Every file under `folder` with its bytes."""
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda out: out.write_bytes(b"\x89PNG\r\n\x1a\n an image"), "not a folder"),
        (
            lambda out: (out.mkdir(), (out / "notes.txt").write_text("mine")),
            "cannot read its manifest.json (No such file or directory)",
        ),
        (
            lambda out: (out.mkdir(), (out / "manifest.json").write_text('{"schema_version": 7}')),
            "its manifest.json has schema_version 7, not 1",
        ),
        (
            lambda out: (out.mkdir(), (out / "manifest.json").write_text('{"schema_version": true}')),
            "its manifest.json has schema_version True, not 1",
        ),
        (
            lambda out: (out.mkdir(), (out / "manifest.json").write_text("[" * 50 + "]" * 50)),
            "its manifest.json: JSON nesting 50 levels is outside 0..32 levels",
        ),
    ],
)
def test_force_replaces_nothing_but_a_bundle(small_nets, tmp_path, make, reason):
    """An image, a folder of one's own or another tool's manifest at --out is refused, untouched, before any export."""
    out = tmp_path / "out"
    make(out)
    before = _snapshot(tmp_path)
    with pytest.raises(exporter.ExportError) as caught:
        exporter.export_bundle(*small_nets, out, overwrite=True, log=lambda *_: None)
    assert str(caught.value) == f"{out}: not a bundle ({reason}); --force replaces only a bundle folder"
    assert _snapshot(tmp_path) == before and sorted(tmp_path.iterdir()) == [out]


def test_force_replaces_no_link_even_to_a_bundle(small_bundle, small_nets, tmp_path):
    out = tmp_path / "out"
    out.symlink_to(small_bundle, target_is_directory=True)
    with pytest.raises(exporter.ExportError, match=r"out: not a bundle \(a link\); --force replaces only a bundle"):
        exporter.export_bundle(*small_nets, out, overwrite=True, log=lambda *_: None)
    assert out.is_symlink() and load_bundle(out)


def test_the_checks_hold_again_when_the_bundle_is_moved_into_place(bundle_copy, tmp_path):
    """`out` is checked again just before it is swapped out: a folder that stopped being a bundle stays."""
    staging = tmp_path / "staging"
    staging.mkdir()
    (bundle_copy / "manifest.json").unlink()
    before = _snapshot(bundle_copy)
    with pytest.raises(exporter.ExportError, match="not a bundle"):
        exporter._move_into_place(staging, bundle_copy)
    assert _snapshot(bundle_copy) == before and staging.is_dir()


@pytest.fixture
def checkpoints(small_nets, tmp_path):
    save_checkpoint(small_nets[0], tmp_path / "trajectory.pt")
    save_checkpoint(small_nets[1], tmp_path / "restoration.pt")
    return tmp_path / "trajectory.pt", tmp_path / "restoration.pt"


def test_command_line_export(checkpoints, tmp_path, capsys):
    trajectory, restoration = checkpoints
    out = tmp_path / "cli"
    assert exporter.main(["--trajectory", str(trajectory), "--restoration", str(restoration), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "restoration.onnx" in printed and " MB" in printed and "written in" in printed
    assert load_bundle(out).manifest["sources"]["trajectory"]["sha256"] == file_sha256(trajectory)


def test_command_line_force_keeps_the_checkpoints_being_exported(checkpoints, small_bundle, tmp_path, capsys):
    """`--out` the folder holding the checkpoints: refused whether it is a bundle or not, nothing deleted."""
    trajectory, restoration = checkpoints
    arguments = ["--trajectory", str(trajectory), "--restoration", str(restoration), "--force"]
    before = _snapshot(tmp_path)
    assert exporter.main([*arguments, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert (
        error == f"error: {tmp_path}: not a bundle (cannot read its manifest.json (No such file or directory)); "
        "--force replaces only a bundle folder\n"
    )
    assert _snapshot(tmp_path) == before
    (tmp_path / "manifest.json").write_bytes((small_bundle / "manifest.json").read_bytes())
    before = _snapshot(tmp_path)
    assert exporter.main([*arguments, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert (
        error == f"error: {tmp_path}: holds the trajectory checkpoint being exported ({trajectory}); it is not "
        "replaced\n"
    )
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "problem, expected",
    [
        ("missing", "absent.pt: no such checkpoint file"),
        ("swapped", "holds a restoration-net state dict, expected the trajectory net"),
        ("unwritable", "cannot write the bundle there"),
    ],
)
def test_command_line_errors(checkpoints, tmp_path, capsys, problem, expected):
    trajectory, restoration = checkpoints
    out = tmp_path / "out"
    if problem == "missing":
        trajectory = tmp_path / "absent.pt"
    elif problem == "swapped":
        trajectory = restoration
    else:
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "out"
    code = exporter.main(["--trajectory", str(trajectory), "--restoration", str(restoration), "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2 and expected in error and error.count("\n") == 1
    assert not out.exists()
