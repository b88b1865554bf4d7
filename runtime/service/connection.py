"""A connection to a served `deblur` model over HTTP or gRPC (tritonclient), usable from many threads at once.

tritonclient's HTTP client is not thread-safe, so each thread gets its own client of the same server.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from runtime.service import protocol

#: Seconds a request may take: a large image on a CPU restores in minutes.
REQUEST_TIMEOUT_S = 600.0
#: Seconds to wait for the server to accept a connection.
CONNECT_TIMEOUT_S = 10.0

#: The outputs every request asks for.
OUTPUTS = (protocol.RESTORED, protocol.TRAJECTORY)


class ServedError(RuntimeError):
    """A request the server refused or could not answer; one line saying why."""


class Connection:
    """The `deblur` model at `url` (`HOST:PORT`; `http://` or `grpc://` in front is dropped), over gRPC when
    `grpc`, else HTTP."""

    def __init__(self, url: str, grpc: bool = False) -> None:
        self.url = url.split("://", 1)[-1].rstrip("/")
        self.grpc = grpc
        self._module: Any = _client_module(grpc)
        self._local = threading.local()

    @property
    def name(self) -> str:
        """The server as people write it: `http://HOST:PORT` or `grpc://HOST:PORT`."""
        return f"{'grpc' if self.grpc else 'http'}://{self.url}"

    def not_ready(self) -> str | None:
        """Why the model cannot take requests now (unreachable, not ready), or None when it can."""
        try:
            client = self._client()
            if not client.is_server_live():
                return f"{self.name}: the server is not live"
            if not client.is_model_ready(protocol.MODEL_NAME):
                return f"{self.name}: no model '{protocol.MODEL_NAME}' is ready"
        except Exception as error:  # tritonclient raises its own, gevent's and gRPC's errors
            return f"{self.name}: {_reason(error)}"
        return None

    def infer(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's outputs for one request's inputs (`protocol.request_arrays`); ServedError when refused."""
        module = self._module
        inputs = []
        for name, array in arrays.items():
            tensor = module.InferInput(name, list(array.shape), protocol.TRITON_DTYPES[array.dtype])
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            inputs.append(tensor)
        outputs = [module.InferRequestedOutput(name) for name in OUTPUTS]
        try:
            if self.grpc:
                result = self._client().infer(
                    protocol.MODEL_NAME, inputs, outputs=outputs, client_timeout=REQUEST_TIMEOUT_S
                )
            else:
                result = self._client().infer(protocol.MODEL_NAME, inputs, outputs=outputs)
        except Exception as error:  # as above: the server's refusal or a broken connection
            raise ServedError(_reason(error)) from None
        return {name: result.as_numpy(name) for name in OUTPUTS}

    def close(self) -> None:
        """Close this thread's client (the others close with their threads)."""
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            if self.grpc:
                client = self._module.InferenceServerClient(self.url)
            else:
                client = self._module.InferenceServerClient(
                    self.url, connection_timeout=CONNECT_TIMEOUT_S, network_timeout=REQUEST_TIMEOUT_S
                )
            self._local.client = client
        return client


def _client_module(grpc: bool) -> Any:
    """tritonclient's gRPC or HTTP module; ImportError saying what to install when it is missing."""
    try:
        if grpc:
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as error:
        raise ImportError(f"the client needs tritonclient (pip install -e '.[serve]'): {error}") from None
    return module


def _reason(error: BaseException) -> str:
    """One line for a client error: the server's own message when it sent one."""
    message = getattr(error, "message", None)
    text = message() if callable(message) else str(error)
    return protocol.error_line(text or type(error).__name__)
