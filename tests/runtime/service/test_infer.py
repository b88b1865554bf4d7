"""The model's inference callable without a server: what one instance does with a batch of requests."""

from __future__ import annotations

import numpy as np
import pytest

from runtime import BackendSettings, Deblurrer
from runtime.service import protocol
from runtime.service.protocol import RequestError
from runtime.service.server import infer_function
from tests.runtime.service.conftest import DEMO, rgb8


@pytest.fixture(scope="module")
def deblurrer():
    with Deblurrer(DEMO, BackendSettings("ort-cpu", threads=1), log=lambda _: None) as made:
        yield made


def test_each_request_of_a_batch_gets_its_own_answer(deblurrer):
    said: list[str] = []
    infer = infer_function(deblurrer, said.append)
    images = [rgb8(40, 48, seed) for seed in (1, 2, 3)]
    known = np.full((1, 25, 3), 0.002, np.float32)
    requests = [
        protocol.request_arrays(images[0]),
        {**protocol.request_arrays(images[1], 70.0), protocol.TRAJECTORY: known},
        {protocol.IMAGE: np.stack([images[2], images[0]])},  # two images in one request
    ]
    answers = infer(requests)
    assert [answer[protocol.RESTORED].shape for answer in answers] == [(1, 40, 48, 3), (1, 40, 48, 3), (2, 40, 48, 3)]
    expected = [
        deblurrer.restore(images[0].astype(np.float32) / 255),
        deblurrer.restore(images[1].astype(np.float32) / 255, 70.0, trajectory=known[0]),
        deblurrer.restore(images[2].astype(np.float32) / 255),
        deblurrer.restore(images[0].astype(np.float32) / 255),
    ]
    served = [(answer, index) for answer in answers for index in range(len(answer[protocol.RESTORED]))]
    for (answer, index), result in zip(served, expected, strict=True):
        restored = answer[protocol.RESTORED][index].astype(int)
        assert np.abs(restored - protocol.response([result.restored], [result.trajectory])["restored"][0]).max() <= 1
        np.testing.assert_allclose(answer[protocol.TRAJECTORY][index], result.trajectory, atol=1e-5)
    np.testing.assert_array_equal(answers[1][protocol.TRAJECTORY][0], known[0])  # known motion is used as given
    assert said == []


def test_a_refused_request_fails_its_batch_and_is_said(deblurrer):
    said: list[str] = []
    infer = infer_function(deblurrer, said.append)
    good = protocol.request_arrays(rgb8(40, 48))
    bad = protocol.request_arrays(rgb8(40, 48), float("nan"))
    with pytest.raises(RequestError, match=r"^request 2 of 2 batched together: focal_length: focal length nan"):
        infer([good, bad])
    with pytest.raises(RequestError, match=r"^focal_length: focal length nan px is outside"):
        infer([bad])
    assert len(said) == 2 and said[1].startswith("refused: focal_length: focal length nan")
    assert len(infer([good])) == 1  # and the instance goes on
