"""SIGTERM (or Ctrl-C's SIGINT) stops the server cleanly: the request in flight is answered, the exit code is 0,
and it takes under 30 s."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

from runtime.service import protocol
from runtime.service.connection import Connection
from tests.runtime.service.conftest import launch, rgb8

pytest.importorskip("tritonclient.http")


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_server_once_the_request_in_flight_is_answered(tmp_path, number):
    server = launch(tmp_path / "server.log")
    try:
        answers: list[tuple[float, dict[str, np.ndarray]]] = []
        connection = Connection(server.http_url)

        def send() -> None:
            outputs = connection.infer(protocol.request_arrays(rgb8(256, 256)))
            answers.append((time.monotonic(), outputs))

        request = threading.Thread(target=send)
        request.start()
        time.sleep(0.5)  # the request is being restored
        started = time.monotonic()
        server.process.send_signal(number)
        code = server.process.wait(30)
        seconds = time.monotonic() - started
        request.join(5)
    finally:
        if server.process.poll() is None:
            server.stop()
    assert code == 0, server.log_tail(20)
    assert seconds < 30
    assert len(answers) == 1 and answers[0][1][protocol.RESTORED].shape == (1, 256, 256, 3)
    assert answers[0][0] > started  # it was in flight when the signal came
    log = server.log.read_text()
    assert f"{signal.Signals(number).name}: stopping once the requests in flight are answered" in log
    assert log.rstrip().endswith("stopped")
    assert not server.ready()
