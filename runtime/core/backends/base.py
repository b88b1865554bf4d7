"""The one interface every backend implements: load a bundle graph, set input shapes, run, close.

A `Runner` executes one graph of a bundle. Backends differ in how (onnxruntime execution providers, native
TensorRT engines) but not in what: inputs and outputs are float32 numpy arrays keyed by the graph's I/O names
as recorded in the manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from runtime.core.bundle import Bundle


class BackendError(RuntimeError):
    """A backend that cannot run here or cannot run this bundle; one line saying why and what to do."""


class Runner(Protocol):
    """One graph of a bundle on one backend."""

    backend: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def set_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Prepare for inputs of these shapes (allocate or grow buffers); cheap when nothing changed."""

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph; outputs are fresh arrays the caller owns."""

    def close(self) -> None:
        """Release sessions, engines, device buffers and streams."""


@dataclass(frozen=True)
class Backend:
    """A way to run bundles: its CLI name, whether it can run here, and how it loads one graph."""

    name: str
    #: None when the backend can run on this machine, else the reason it cannot.
    unavailable_reason: Callable[[], str | None]
    #: (bundle, graph role, precision) -> Runner
    load: Callable[[Bundle, str, str], Runner]
