"""`python -m experiments.rolling_shutter` reports every readout time, and a global shutter needs no bands."""

import json

import numpy as np

from experiments.rolling_shutter import READOUTS_S, main


def test_every_readout_time_is_restored_both_ways_and_reported(small_bundle, pairs, tmp_path, capsys):
    assert main(["--engine", str(small_bundle), "--pairs", str(pairs), "--limit", "1", "--out", str(tmp_path)]) == 0
    stdout = capsys.readouterr().out
    assert (tmp_path / "rolling_shutter.md").read_text() == stdout
    (figures,) = json.loads((tmp_path / "rolling_shutter.json").read_text()).values()
    assert list(figures) == [f"{1000 * readout:g} ms" for readout in READOUTS_S]
    assert all(np.isfinite([row["with_readout_db"], row["without_readout_db"]]).all() for row in figures.values())
    # Without a readout the two restorations are the same; the 48-row pairs hold one band whatever the readout.
    assert figures["0 ms"]["with_readout_db"] == figures["0 ms"]["without_readout_db"]
    assert [row["bands"] for row in figures.values()] == [1, 1, 1, 1]
    for readout in figures:
        assert f"| {readout} |" in stdout
