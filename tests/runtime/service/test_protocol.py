"""The wire format's pure checks and conversions: no server, any environment."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from runtime.service import protocol
from runtime.service.protocol import RequestError

MIN_SIDE, POSES = 32, 25


def good_request(count: int = 1, height: int = 40, width: int = 48) -> dict[str, np.ndarray]:
    image = np.random.default_rng(0).integers(0, 256, (count, height, width, 3), dtype=np.uint8)
    return {
        protocol.IMAGE: image,
        protocol.FOCAL_LENGTH: np.full((count, 1), 60.0, np.float32),
        protocol.TRAJECTORY: np.full((count, POSES, 3), 0.01, np.float32),
    }


def test_the_model_declares_its_inputs_and_outputs():
    inputs = {spec.name: spec for spec in protocol.input_specs(POSES)}
    assert [(s.dtype, s.shape, s.optional) for s in inputs.values()] == [
        (np.uint8, (-1, -1, 3), False),
        (np.float32, (1,), True),
        (np.float32, (POSES, 3), True),
    ]
    assert list(inputs) == ["image", "focal_length", "trajectory"]
    outputs = protocol.output_specs(POSES)
    assert [(s.name, s.dtype, s.shape) for s in outputs] == [
        ("restored", np.uint8, (-1, -1, 3)),
        ("trajectory", np.float32, (POSES, 3)),
    ]
    assert {protocol.TRITON_DTYPES[s.dtype] for s in (*inputs.values(), *outputs)} == {"UINT8", "FP32"}


def test_a_request_becomes_one_frame_per_image():
    request = good_request(count=2)
    frames = protocol.frames(request, MIN_SIDE, POSES)
    assert len(frames) == 2
    for frame, image in zip(frames, request[protocol.IMAGE], strict=True):
        assert frame.rgb.dtype == np.float32 and frame.rgb.shape == (40, 48, 3)
        np.testing.assert_array_equal(frame.rgb, image.astype(np.float32) / np.float32(255))
        assert frame.focal_length == 60.0
        assert frame.trajectory is not None and frame.trajectory.shape == (POSES, 3)


def test_the_optional_inputs_may_be_left_out():
    request = good_request()
    del request[protocol.FOCAL_LENGTH], request[protocol.TRAJECTORY]
    (frame,) = protocol.frames(request, MIN_SIDE, POSES)
    assert frame.focal_length is None and frame.trajectory is None


def _changed(name: str, value: np.ndarray | None) -> dict[str, np.ndarray]:
    request = good_request()
    if value is None:
        del request[name]
    else:
        request[name] = value
    return request


def _trajectory_with(value: float) -> np.ndarray:
    trajectory = np.zeros((1, POSES, 3), np.float32)
    trajectory[0, 3, 1] = value
    return trajectory


@pytest.mark.parametrize(
    "request_, message",
    [
        (_changed("image", None), "image: missing"),
        (
            _changed("image", np.zeros((1, 40, 48, 3), np.float32)),
            "image: expected uint8 B x H x W x 3 RGB, got float32",
        ),
        (
            _changed("image", np.zeros((40, 48, 3), np.uint8)),
            "image: expected B x H x W x 3 RGB, got shape [40, 48, 3]",
        ),
        (_changed("image", np.zeros((1, 40, 48, 4), np.uint8)), "got shape [1, 40, 48, 4]"),
        (
            _changed("image", np.zeros((1, 16, 48, 3), np.uint8)),
            "image: 48x16 is too small; the bundle needs at least 32",
        ),
        (_changed("focal_length", np.array([[np.nan]], np.float32)), "focal_length: focal length nan px is outside"),
        (_changed("focal_length", np.array([[-5.0]], np.float32)), "focal_length: focal length -5 px is outside"),
        (_changed("focal_length", np.array([[50.0]], np.float64)), "focal_length: expected float32 pixels"),
        (_changed("focal_length", np.array([50.0], np.float32)), "focal_length: expected shape [1, 1]"),
        (_changed("trajectory", _trajectory_with(np.inf)), "trajectory: pose 3 is not finite"),
        (_changed("trajectory", _trajectory_with(np.nan)), "trajectory: pose 3 is not finite"),
        (_changed("trajectory", _trajectory_with(2.0)), "trajectory: rotation 2 rad is outside"),
        (_changed("trajectory", np.zeros((1, 24, 3), np.float32)), "trajectory: expected shape [1, 25, 3]"),
    ],
)
def test_a_bad_request_is_refused_saying_what_is_wrong(request_, message):
    with pytest.raises(RequestError) as refused:
        protocol.frames(request_, MIN_SIDE, POSES)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_refusal_in_a_batch_names_the_request_and_fails_the_batch():
    error = RequestError("focal_length: focal length nan px is outside 1..1000000 px")
    assert protocol.batch_refusal(0, 1, error) is error
    assert str(protocol.batch_refusal(1, 3, error)) == (
        "request 2 of 3 batched together: focal_length: focal length nan px is outside 1..1000000 px; "
        "the whole batch is refused"
    )


def test_a_response_rounds_and_clips_the_restored_images():
    restored = np.array([[[-0.1, 0.5, 1.2]]], np.float32)
    outputs = protocol.response([restored, restored], [np.zeros((POSES, 3)), np.ones((POSES, 3))])
    assert outputs[protocol.RESTORED].dtype == np.uint8
    np.testing.assert_array_equal(outputs[protocol.RESTORED], [[[[0, 128, 255]]]] * 2)
    assert outputs[protocol.TRAJECTORY].dtype == np.float32 and outputs[protocol.TRAJECTORY].shape == (2, POSES, 3)


@pytest.mark.parametrize("what", ["restored image", "trajectory"])
def test_a_response_refuses_values_that_are_not_finite(what):
    restored, trajectory = np.zeros((2, 2, 3), np.float32), np.zeros((POSES, 3), np.float32)
    if what == "restored image":
        restored[1, 1, 2] = np.nan
    else:
        trajectory[4, 0] = np.inf
    with pytest.raises(ValueError, match=f"^the {what} holds NaN or infinite values$"):
        protocol.response([restored], [trajectory])


def test_a_clients_request_has_a_batch_of_one():
    image = np.full((40, 48, 3), 0.5, np.float32)
    arrays = protocol.request_arrays(image, 55.0, np.zeros((POSES, 3)))
    assert arrays[protocol.IMAGE].dtype == np.uint8 and arrays[protocol.IMAGE].shape == (1, 40, 48, 3)
    assert int(arrays[protocol.IMAGE][0, 0, 0, 0]) == 128
    assert arrays[protocol.FOCAL_LENGTH].dtype == np.float32 and arrays[protocol.FOCAL_LENGTH].tolist() == [[55.0]]
    assert arrays[protocol.TRAJECTORY].dtype == np.float32 and arrays[protocol.TRAJECTORY].shape == (1, POSES, 3)
    assert set(protocol.request_arrays(image)) == {protocol.IMAGE}


@settings(max_examples=25, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(32, 40), st.integers(32, 40), st.just(3))))
def test_eight_bit_pixels_cross_the_wire_unchanged(image):
    (frame,) = protocol.frames(protocol.request_arrays(image), MIN_SIDE, POSES)
    back = protocol.response([frame.rgb], [np.zeros((POSES, 3))])[protocol.RESTORED][0]
    np.testing.assert_array_equal(back, image)


def test_an_error_line_is_the_refusal_inside_a_served_traceback():
    served = (
        "Model execute error: Traceback (most recent call last):\n"
        '  File "model.py", line 492, in execute\n    raise triton_responses_or_error\n'
        "c_python_backend_utils.TritonModelException: Traceback (most recent call last):\n"
        '  File "protocol.py", line 122, in _focal_lengths\n'
        "runtime.service.protocol.RequestError: focal_length: focal length nan px is outside 1..1000000 px\n\n\n\n"
        "At:\n  /tmp/folder/1/model.py(501): execute\n"
    )
    assert protocol.error_line(served) == "focal_length: focal length nan px is outside 1..1000000 px"
    triton = (
        "[request id: <id_unknown>] inference input 'image' data-type is 'FP32', but model 'deblur' expects 'UINT8'"
    )
    assert protocol.error_line(triton) == triton
    assert protocol.error_line("failed to connect to all addresses\nsecond") == "failed to connect to all addresses"
    assert protocol.error_line("") == ""
