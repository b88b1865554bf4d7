"""`python -m models.benchmark warp`: the PyTorch side of the blur-operator timing, on the runtime's inputs."""

import json

import pytest

from models.benchmark import main


def test_the_warp_mode_prints_one_positive_median_as_json(capsys):
    assert main(["warp", "--size", "32x40", "--threads", "1", "--repeats", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["threads"] == 1 and len(printed["times_s"]) == 2 and 0 < printed["warp_s"] < 5


def test_a_bad_size_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["warp", "--size", "32"])
    assert "expected HEIGHTxWIDTH" in capsys.readouterr().err
