"""A bundle graph that is not ONNX, though its sha256 in the manifest matches (a bad copy, or a crafted bundle),
stops the calibration commands with one line naming the file and exit code 2, not a traceback."""

import json
from pathlib import Path

import cv2
import pytest

from calibration import fp16, int8
from calibration.gate import cpu_session
from runtime.core.bundle import MANIFEST, BundleError, write_manifest
from tests.conftest import run
from tests.runtime.conftest import smooth_bgr8


def corrupt(bundle: Path, role: str) -> Path:
    """Overwrite a graph with half of itself and record the new sha256."""
    graph = bundle / f"{role}.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    write_manifest(bundle, json.loads((bundle / MANIFEST).read_text()))
    return graph


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "image.png"), smooth_bgr8(64, 80))
    return folder


@pytest.mark.parametrize("role", ["trajectory", "restoration"])
def test_int8_says_a_graph_is_not_onnx_in_one_line(bundle_copy, images, role):
    graph = corrupt(bundle_copy, role)
    code, stdout, stderr = run(int8.main, bundle_copy, "--images", images, "--samples", 1)
    assert code == 2 and stdout == ""
    assert len(stderr.splitlines()) == 1 and stderr.startswith(f"error: {graph}: cannot read it as ONNX (")


def test_fp16_says_a_graph_is_not_onnx_in_one_line(bundle_copy, images):
    graph = corrupt(bundle_copy, "sequence")
    code, _, stderr = run(fp16.main, bundle_copy, "--images", images, "--samples", 1)
    assert code == 2
    assert stderr.splitlines()[-1].startswith(f"error: {graph}: cannot read it as ONNX (")
    assert not [line for line in stderr.splitlines() if line.startswith(("Traceback", "  File"))]


def test_the_gate_session_names_a_graph_onnxruntime_cannot_load(tmp_path):
    graph = tmp_path / "restoration.onnx"
    graph.write_bytes(b"\xff" * 64)
    with pytest.raises(BundleError) as error:
        cpu_session(graph)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{graph}: onnxruntime cannot load it (")
