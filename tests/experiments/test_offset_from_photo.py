"""`python -m experiments.offset_from_photo` searches the offsets both ways and refines from both starts."""

import json

from experiments.offset_from_photo import OFFSETS_S, REFINE_FROM_S, main


def test_both_criteria_and_both_refinements_are_reported(small_bundle, pairs, tmp_path, capsys):
    assert main(["--engine", str(small_bundle), "--pairs", str(pairs), "--limit", "1", "--out", str(tmp_path)]) == 0
    stdout = capsys.readouterr().out
    assert (tmp_path / "offset_from_photo.md").read_text() == stdout
    (figures,) = json.loads((tmp_path / "offset_from_photo.json").read_text()).values()
    for key in ("closest_to_estimate_s", "least_reblur_error_s"):
        assert OFFSETS_S[0] <= figures[key] <= OFFSETS_S[-1]
    for offset in REFINE_FROM_S:
        refined = figures[f"refined from {1000 * offset:g} ms"]
        assert refined["error_before_px"] > 0 and refined["error_after_px"] >= 0
    assert "| least reblur error | " in stdout and "| 5 ms | " in stdout
