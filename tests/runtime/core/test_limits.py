"""`runtime.core.limits` and `runtime.core.textfiles`: physical bounds refused in one line naming the value, the limit
and its source; text files and JSON documents read within bounds."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from runtime.core import textfiles
from runtime.core.limits import (
    FOCAL_LENGTH_PX,
    GYRO_RATE_RAD_S,
    LIMITS,
    ROTATION_RAD,
    SIGMA,
    TEXT_FILE_BYTES,
    LimitError,
)


def test_a_value_within_its_limit_comes_back_as_a_float():
    assert FOCAL_LENGTH_PX.check(np.float32(512.0), "x") == 512.0
    assert type(FOCAL_LENGTH_PX.check(np.int64(2), "x")) is float
    assert SIGMA.check(0) == 0.0 and SIGMA.check(0.5) == 0.5  # closed at both ends


@pytest.mark.parametrize(
    ("limit", "value", "message"),
    [
        (FOCAL_LENGTH_PX, 1e30, "--focal-length: focal length 1e+30 px is outside 1..1000000 px"),
        (FOCAL_LENGTH_PX, 0.5, "--focal-length: focal length 0.5 px is outside 1..1000000 px"),
        (SIGMA, 1e10, "--focal-length: sigma (the noise level) 10000000000 is outside 0..0.5"),
        (GYRO_RATE_RAD_S, -1e6, "--focal-length: gyroscope rate -1000000 rad/s is outside -40..40 rad/s"),
        (ROTATION_RAD, math.nan, "--focal-length: rotation nan rad is outside -0.785398..0.785398 rad"),
        (ROTATION_RAD, -math.inf, "--focal-length: rotation -inf rad is outside -0.785398..0.785398 rad"),
        (FOCAL_LENGTH_PX, "wide", "--focal-length: focal length 'wide' is not a number"),
        (FOCAL_LENGTH_PX, [1, 2], "--focal-length: focal length [1, 2] is not a number"),
        (FOCAL_LENGTH_PX, 10**400, "--focal-length: focal length 1000000000000000000000000000000000000000"),
    ],
)
def test_a_value_outside_its_limit_is_refused_in_one_line_naming_it(limit, value, message):
    with pytest.raises(LimitError) as caught:
        limit.check(value, "--focal-length")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError keep working


def test_arrays_are_checked_at_once_and_the_first_value_outside_is_named():
    poses = np.zeros((25, 3))
    assert ROTATION_RAD.check_all(poses, lambda index: "unused").shape == (25, 3)
    poses[7, 1], poses[9, 0] = 100.0, np.nan
    with pytest.raises(LimitError, match=r"^pose 7 axis 1: rotation 100 rad is outside -0.785398..0.785398 rad$"):
        ROTATION_RAD.check_all(poses, lambda index: f"pose {index[0]} axis {index[1]}")
    poses[7, 1] = 0.0
    with pytest.raises(LimitError, match="^pose 9 axis 0: rotation nan rad"):
        ROTATION_RAD.check_all(poses, lambda index: f"pose {index[0]} axis {index[1]}")


def test_the_rotation_limit_takes_the_nets_own_clamp():
    """The trajectory net clamps to pi/4 in float32, 2e-8 above the float64 pi/4: its estimates stay accepted,
    and so does a trajectory file written from them; the next float32 above is refused."""
    clamp = float(np.float32(math.pi / 4))
    assert clamp > math.pi / 4
    np.testing.assert_array_equal(ROTATION_RAD.check_all([[clamp, -clamp, 0.0]], str), [[clamp, -clamp, 0.0]])
    with pytest.raises(LimitError):
        ROTATION_RAD.check(float(np.nextafter(np.float32(clamp), np.float32(1))))


def test_every_limit_says_why():
    assert len({limit.quantity for limit in LIMITS}) == len(LIMITS)
    for limit in LIMITS:
        assert limit.low < limit.high and limit.reason and limit.quantity


# --- text files and JSON --------------------------------------------------------------------------------------


def test_text_files_are_read_up_to_their_limit(tmp_path):
    path = tmp_path / "poses.json"
    path.write_bytes(b" " * int(TEXT_FILE_BYTES.high))
    assert len(textfiles.read_text(path, "trajectory file")) == TEXT_FILE_BYTES.high
    with path.open("ab") as file:
        file.write(b" ")
    with pytest.raises(textfiles.TextFileError) as caught:
        textfiles.read_text(path, "trajectory file")
    assert str(caught.value) == "trajectory file: file size 16777217 bytes is outside 0..16777216 bytes"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read pairs listing (No such file or directory)"),
        (b"\xff\xfe[1]", "cannot read pairs listing (not a text file)"),
    ],
)
def test_unreadable_text_files_are_refused_in_one_line(tmp_path, content, reason):
    path = tmp_path / "pairs.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(textfiles.TextFileError, match=rf"^{re.escape(reason)}$"):
        textfiles.read_text(path, "pairs listing")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 33 + "]" * 33, "JSON nesting 33 levels is outside 0..32 levels"),
        ('{"a": ' * 40 + "1" + "}" * 40, "JSON nesting 40 levels is outside 0..32 levels"),
        ("[" * 100_000 + "]" * 100_000, "JSON nested too deep to parse; JSON nesting must be within 0..32 levels"),
        ("[" + "1" * 5000 + "]", "not valid JSON (Exceeds the limit (4300 digits) for integer string conversion"),
        ("[1,", "not valid JSON (Expecting value: line 1 column 4 (char 3))"),
    ],
)
def test_json_too_deep_or_invalid_is_refused_in_one_line(text, reason):
    with pytest.raises(textfiles.TextFileError) as caught:
        textfiles.parse_json(text)
    assert str(caught.value).startswith(reason) and "\n" not in str(caught.value)


def test_json_within_the_nesting_limit_is_read():
    assert textfiles.nesting(textfiles.parse_json("[" * 32 + "]" * 32)) == 32
    assert textfiles.nesting(textfiles.parse_json('{"a": ' * 31 + "[]" + "}" * 31)) == 32
    assert [textfiles.nesting(document) for document in (3, [], [[1], {"a": [2]}], {"a": {}})] == [0, 1, 3, 2]
