import json

import pytest

from runtime.core.bundle import MANIFEST, BundleError, load_bundle


def test_a_sound_bundle_loads(bundle_copy):
    loaded = load_bundle(bundle_copy)
    assert loaded.graph_path("restoration") == bundle_copy / "restoration.onnx"
    assert loaded.n_positions == 25 and loaded.default_sigma == 0.01


def test_a_tampered_graph_is_refused(bundle_copy):
    with (bundle_copy / "sequence.onnx").open("ab") as file:
        file.write(b"\0")
    with pytest.raises(BundleError, match=r"sequence\.onnx: sha256 differs from manifest\.json"):
        load_bundle(bundle_copy)


def test_a_missing_graph_is_refused(bundle_copy):
    (bundle_copy / "trajectory.onnx").unlink()
    with pytest.raises(BundleError, match=r"trajectory\.onnx: missing from the bundle"):
        load_bundle(bundle_copy)


def test_an_unknown_schema_version_is_refused(bundle_copy):
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    manifest["schema_version"] = 99
    (bundle_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unknown schema_version 99; this runtime reads version 1"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("damage", ["no manifest", "broken manifest", "not a directory", "graph not listed"])
def test_other_damage_is_named(bundle_copy, damage):
    manifest_path = bundle_copy / MANIFEST
    target = bundle_copy
    if damage == "no manifest":
        manifest_path.unlink()
    elif damage == "broken manifest":
        manifest_path.write_text("{")
    elif damage == "not a directory":
        target = bundle_copy / "restoration.onnx"
    else:
        manifest = json.loads(manifest_path.read_text())
        del manifest["graphs"]["sequence"]
        manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as error:
        load_bundle(target)
    assert "\n" not in str(error.value) and str(error.value).startswith(str(target))
