"""The shipped demo bundle is what the shipped checkpoints export to, and the main command works on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from export.graphs import GRAPHS, example_inputs
from export.onnx import TOLERANCES, export_bundle
from models.checkpoint import load_restoration_net, load_trajectory_net
from runtime.core.bundle import file_sha256, load_bundle

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "runtime" / "bundles" / "demo"
WEIGHTS = ROOT / "models" / "weights"
CHECKPOINTS = {"trajectory": WEIGHTS / "demo_trajectory.pt", "restoration": WEIGHTS / "demo_restoration.pt"}

pytestmark = pytest.mark.skipif(not DEMO.is_dir(), reason="no demo bundle shipped in runtime/bundles/demo")


def test_the_shipped_checkpoints_are_compact_and_named_in_the_manifest():
    bundle = load_bundle(DEMO)  # also checks every file's sha256
    assert sum(path.stat().st_size for path in CHECKPOINTS.values()) < 25e6
    for role, path in CHECKPOINTS.items():
        assert bundle.manifest["sources"][role] == {"file": path.name, "sha256": file_sha256(path)}


def test_the_demo_bundle_is_what_the_checkpoints_export_to(tmp_path):
    shipped = load_bundle(DEMO)
    trajectory_net = load_trajectory_net(CHECKPOINTS["trajectory"])
    restoration_net = load_restoration_net(CHECKPOINTS["restoration"])
    again = load_bundle(export_bundle(trajectory_net, restoration_net, tmp_path / "demo", log=lambda *_: None))
    assert again.manifest["architecture"] == shipped.manifest["architecture"]
    for spec in GRAPHS:
        inputs = {name: value.numpy() for name, value in example_inputs(spec, 1, 72, 96, 25, seed=3).items()}
        outputs = [
            onnxruntime.InferenceSession(str(bundle.graph_path(spec.role)), providers=["CPUExecutionProvider"]).run(
                None, inputs
            )
            for bundle in (shipped, again)
        ]
        for name, ours, theirs in zip(spec.outputs, *outputs, strict=True):
            assert np.abs(ours - theirs).max() <= TOLERANCES[name], f"{spec.role} {name}"
