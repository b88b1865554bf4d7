"""onnxruntime backends: CPU, CUDA and TensorRT execution providers over the bundle's ONNX graphs.

On the CPU provider the restoration and refine graphs are loaded with their averaged warps rewritten as DeformConv
(`ort_warps`: the same values, faster there). The TensorRT execution provider keeps its engine and timing caches
inside the bundle (`ort-trt-cache/`, which the manifest's sha256 table ignores) and takes its shape profile from a
build profile when one is given. onnxruntime writes and reads those cached engines itself, unchecked by the
bundle's sha256 table: a bundle from elsewhere should arrive without that folder (onnxruntime rebuilds it).
Every graph reaches onnxruntime through `load_bundle`, which proved its file and external data; a file that is
still not loadable (not ONNX, though its sha256 was recorded) is one BackendError line naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime

from runtime.core.backends.base import Backend, BackendError
from runtime.core.backends.ort_warps import deform_warps
from runtime.core.bundle import Bundle, first_line
from runtime.core.profiles import BuildProfile

CACHE_DIRECTORY = "ort-trt-cache"
#: Graphs whose warps the CPU provider runs as DeformConv (`ort_warps`): the trajectory graph has none.
WARP_ROLES = ("restoration", "sequence", "refine")
#: A run whose largest input has more pixels than this (the default restoration tile, 1024x1024) gives its CPU
#: memory arena back afterwards. Tiled graphs never reach it by default; the trajectory net on a large photo does,
#: and its arena would otherwise stay allocated through the restoration (4000x3000 input, demo net, two runs:
#: 3.9 GB resident after them, 0.4 GB with the release, 4.9 s vs 3.2 s for the second run). A release costs
#: time on smaller runs (2000x1500: 0.61 -> 0.81 s per run; 1280x720: 0.18 -> 0.23 s), so tiles and frames up to
#: the threshold keep their arena.
RELEASE_ARENA_ABOVE_PIXELS = 1024 * 1024


class OrtRunner:
    """One bundle graph in an onnxruntime session. onnxruntime allocates per run, so `set_shapes` has no work."""

    def __init__(self, session: onnxruntime.InferenceSession, backend: str) -> None:
        self.backend = backend
        self.session: onnxruntime.InferenceSession | None = session
        self.input_names = tuple(value.name for value in session.get_inputs())
        self.output_names = tuple(value.name for value in session.get_outputs())

    def set_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Nothing to prepare: onnxruntime sizes its buffers on each run."""

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.session is None:
            raise BackendError(f"{self.backend} runner used after close()")
        largest = max((value.shape[-2] * value.shape[-1] for value in inputs.values() if value.ndim == 4), default=0)
        options = _RELEASE_ARENA if largest > RELEASE_ARENA_ABOVE_PIXELS else None
        try:
            outputs = self.session.run(list(self.output_names), dict(inputs), options)
        except Exception as error:  # onnxruntime raises its own exception types (bad input, out of memory, ...)
            raise BackendError(f"{self.backend}: {first_line(error)}") from None
        return dict(zip(self.output_names, outputs, strict=True))

    def close(self) -> None:
        self.session = None


def _release_arena_options() -> onnxruntime.RunOptions:
    """Run options that shrink the CPU memory arena back to its initial size when the run ends."""
    options = onnxruntime.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


_RELEASE_ARENA = _release_arena_options()


def execution_providers(name: str, bundle: Bundle, role: str, profile: BuildProfile | None) -> list[Any]:
    """onnxruntime's provider list for a backend; for ort-tensorrt, caches in the bundle and the shape profile."""
    if name == "ort-cpu":
        return ["CPUExecutionProvider"]
    if name == "ort-cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    cache = bundle.path / CACHE_DIRECTORY
    try:
        cache.mkdir(exist_ok=True)
    except OSError as error:
        raise BackendError(f"{cache}: cannot keep TensorRT caches in the bundle ({error.strerror or error})") from None
    options: dict[str, Any] = {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
    }
    if profile is not None:
        shapes = profile.input_shapes(bundle.manifest["graphs"][role]["inputs"])
        for index, key in enumerate(("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")):
            options[key] = ",".join(f"{name}:{'x'.join(map(str, s[index]))}" for name, s in shapes.items())
    return [("TensorrtExecutionProvider", options), "CUDAExecutionProvider", "CPUExecutionProvider"]


def _make_backend(name: str, provider: str, profile: BuildProfile | None = None, threads: int | None = None) -> Backend:
    def unavailable_reason() -> str | None:
        if provider in onnxruntime.get_available_providers():
            return None
        return f"this onnxruntime ({onnxruntime.__version__}) has no {provider}"

    def load(bundle: Bundle, role: str, precision: str) -> OrtRunner:
        if precision != "fp32" and precision not in bundle.precisions:
            held = ", ".join(["fp32", *bundle.precisions])
            raise BackendError(
                f"{name} runs the bundle's ONNX graphs, which it holds at {held}; for {precision} engines use "
                "--backend tensorrt"
            )
        path: Path = bundle.graph_path(role, precision)
        options = session_options(threads)
        providers = execution_providers(name, bundle, role, profile)
        try:
            warps = name == "ort-cpu" and role in WARP_ROLES
            source = _with_deform_warps(path, bundle.n_positions) if warps else str(path)
            session = onnxruntime.InferenceSession(source, options, providers=providers)
        except Exception as error:  # protobuf's DecodeError, onnx's ValidationError, onnxruntime's own types
            raise BackendError(f"{path}: {name} cannot load it ({first_line(error)})") from None
        if provider not in session.get_providers():
            raise BackendError(f"{path}: {name} fell back to {session.get_providers()[0]}; {provider} is unusable")
        return OrtRunner(session, name)

    return Backend(name, unavailable_reason, load)


def session_options(threads: int | None) -> onnxruntime.SessionOptions:
    """The options of every runtime session: quiet, `threads` intra-op threads (None: onnxruntime's default), and
    no spin-waiting between runs. A Deblurrer runs several sessions one after another, and the idle threads of one
    that spin-wait take the cores from the next (demo bundle, 2 threads, end to end at 256x256: 555.9 -> 514.4 ms
    in `python -m runtime.benchmark`; `docs/architecture.md`)."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    return options


def _with_deform_warps(path: Path, n_positions: int) -> bytes | str:
    """The graph at `path` with its warps as DeformConv (`ort_warps`), serialised; `path` itself when it has none.

    Raises what `onnx.load` raises for a file that is not ONNX (protobuf's DecodeError, onnx's ValidationError).
    """
    model, rewritten = deform_warps(onnx.load(path), n_positions)
    return model.SerializeToString() if rewritten else str(path)


def ort_tensorrt(profile: BuildProfile | None = None, threads: int | None = None) -> Backend:
    """The TensorRT execution provider, with the shape profile of `profile` (else onnxruntime's own)."""
    return _make_backend("ort-tensorrt", "TensorrtExecutionProvider", profile, threads)


def ort_cuda(threads: int | None = None) -> Backend:
    """The CUDA execution provider (`threads`: intra-op threads for what falls back to the CPU)."""
    return _make_backend("ort-cuda", "CUDAExecutionProvider", threads=threads)


def ort_cpu(threads: int | None = None) -> Backend:
    """The CPU execution provider with `threads` intra-op threads (None: onnxruntime's default, one per core)."""
    return _make_backend("ort-cpu", "CPUExecutionProvider", threads=threads)


ORT_CPU = ort_cpu()
