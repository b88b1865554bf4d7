"""The precision table drives the engine builder's sources, the command lines' choices and the gate's roles."""

import argparse

import pytest

from runtime.core import precisions
from runtime.core.backends import add_backend_arguments
from runtime.core.profiles import load_build_profile


def test_engines_of_each_precision_are_parsed_from_the_right_graphs():
    assert precisions.ENGINE_PRECISIONS == ("fp32", "fp16", "int8")
    assert precisions.engine_source("fp32", "weak") is None and precisions.engine_source("fp32", "strong") is None
    # TensorRT 8.6/10 make FP16 from the FP32 graph by builder flag; TensorRT 11 parses the mixed-precision variant.
    assert precisions.engine_source("fp16", "weak") is None
    assert precisions.engine_source("fp16", "strong") == "fp16"
    assert {precisions.engine_source("int8", typing) for typing in ("weak", "strong")} == {"int8-tensorrt"}


def test_each_variant_names_the_command_that_makes_it():
    assert precisions.variant_command("fp16", "b") == "python -m calibration.fp16 b --pairs PAIRS"
    assert (
        precisions.variant_command("int8-tensorrt", "b")
        == "python -m calibration.int8 b --target tensorrt --images DIR"
    )
    assert precisions.variant_command("int8-cpu", "b") == "python -m calibration.int8 b --target cpu --images DIR"


def test_the_command_line_offers_every_precision_with_its_line():
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    for precision in precisions.TABLE:
        assert parser.parse_args(["--precision", precision.name]).precision == precision.name
        assert f"{precision.name}: {precision.summary}" in precisions.help_text()
    with pytest.raises(SystemExit):
        parser.parse_args(["--precision", "int4"])


def test_build_profiles_take_only_engine_precisions(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "name: p\nprecision: bf16\naxes: {batch: [1, 1, 1], height: [32, 64, 64], width: [32, 64, 64]}\n"
    )
    with pytest.raises(ValueError, match="precision 'bf16' is not one of fp32, fp16, int8"):
        load_build_profile(profile)
