"""`python -m experiments.refine_latent` runs on a bundle and pairs and reports every latent."""

import json

import pytest

from experiments.refine_latent import LATENTS, main, markdown, run
from runtime.io.deblur import DEMO_BUNDLE


def test_every_latent_is_refined_and_reported(small_bundle, pairs, tmp_path, capsys):
    assert main(["--engine", str(small_bundle), "--pairs", str(pairs), "--limit", "1", "--out", str(tmp_path)]) == 0
    stdout = capsys.readouterr().out
    assert (tmp_path / "refine_latent.md").read_text() == stdout
    table = json.loads((tmp_path / "refine_latent.json").read_text())
    (errors,) = table.values()
    assert list(errors) == ["start", *LATENTS]
    assert all(value >= 0 for value in errors.values())
    for label in LATENTS.values():
        assert f"| {label} |" in stdout


@pytest.mark.slow
@pytest.mark.skipif(not DEMO_BUNDLE.is_dir(), reason="no demo bundle shipped in runtime/bundles/demo")
def test_the_true_sharp_image_brings_the_refinement_closest_to_the_truth(held_out_pair):
    """The demo bundle on a real pair: refining against the sharp image beats the estimate's own latent."""
    table = run(DEMO_BUNDLE, held_out_pair, progress=lambda _: None)
    (errors,) = table.values()
    assert errors["sharp"] < 0.6 * errors["start"] and errors["sharp"] < errors["restored_estimate"]
    assert "-" in markdown(table)
