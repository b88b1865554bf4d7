"""The backends, fastest first, and how one is chosen: by name, or `auto` (the fastest that can run the bundle).

tensorrt      native TensorRT engines built into the bundle (`python -m export.tensorrt`)
ort-tensorrt  onnxruntime's TensorRT execution provider
ort-cuda      onnxruntime's CUDA execution provider
ort-cpu       onnxruntime on the CPU
openvino      OpenVINO on the CPU (fp32, bf16, INT8 variants); only when asked for by name
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from runtime.core.backends import openvino, ort, tensorrt
from runtime.core.backends.base import Backend, BackendError, Runner
from runtime.core.bundle import Bundle
from runtime.core.precisions import BY_NAME, help_text
from runtime.core.profiles import BuildProfile

NAMES = ("auto", "tensorrt", "ort-tensorrt", "ort-cuda", "ort-cpu", "openvino")


@dataclass(frozen=True)
class BackendSettings:
    """Where and how the graphs run: the backend (`auto`: the fastest that loads them), the precision (fp32, fp16
    on TensorRT engines, or a variant the bundle holds), whether a variant that failed its accuracy gate runs
    anyway (`force_precision`), onnxruntime's intra-op `threads` (None: one per core) and the shape `profile` of
    the TensorRT execution provider (ort-tensorrt)."""

    name: str = "auto"
    precision: str = "fp32"
    force_precision: bool = False
    threads: int | None = None
    profile: BuildProfile | None = None

    def __post_init__(self) -> None:
        if self.name not in NAMES:
            raise BackendError(f"unknown backend {self.name!r}: choose one of {', '.join(NAMES)}")
        if self.threads is not None and self.threads < 1:
            raise BackendError(f"threads must be at least 1, got {self.threads}")


def backends(profile: BuildProfile | None = None, threads: int | None = None) -> list[Backend]:
    """Every backend, fastest first (OpenVINO last: it runs only when named); `profile` gives the TensorRT
    execution provider its shape profile and `threads` sets the CPU backends' threads."""
    return [
        tensorrt.BACKEND,
        ort.ort_tensorrt(profile, threads),
        ort.ort_cuda(threads),
        ort.ort_cpu(threads),
        openvino.openvino_backend(threads),
    ]


def load_runners(
    bundle: Bundle, roles: Iterable[str], settings: BackendSettings, log: Callable[[str], object] = print
) -> tuple[str, dict[str, Runner]]:
    """Runners for the graphs `roles` on one backend; `auto` takes the fastest that loads them and says so.

    Engines are loaded as the bundle holds them: building TensorRT engines is `tensorrt_build`'s, run before.
    """
    # auto never reaches OpenVINO: onnxruntime's CPU backend, before it, always loads.
    candidates = [b for b in backends(settings.profile, settings.threads) if settings.name in ("auto", b.name)]
    skipped: list[str] = []
    for candidate in candidates:
        reason = candidate.unavailable_reason()
        if reason is None:
            try:
                runners = _load_all(candidate, bundle, list(roles), settings.precision)
            except BackendError as error:
                reason = str(error)
            else:
                if settings.name == "auto":
                    log(f"backend: {candidate.name} (auto)" + (f"; skipped {'; '.join(skipped)}" if skipped else ""))
                return candidate.name, runners
        if settings.name != "auto":
            raise BackendError(f"backend {candidate.name} cannot run here: {reason}")
        skipped.append(f"{candidate.name}: {reason}")
    raise BackendError("no backend can run this bundle: " + "; ".join(skipped))


def _load_all(backend: Backend, bundle: Bundle, roles: list[str], precision: str) -> dict[str, Runner]:
    """Load every role or none: a failure closes what was already loaded."""
    runners: dict[str, Runner] = {}
    try:
        for role in roles:
            runners[role] = backend.load(bundle, role, precision)
    except BaseException:
        for runner in runners.values():
            runner.close()
        raise
    return runners


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """The command lines' choice of backend, precision and CPU threads."""
    parser.add_argument("--backend", choices=NAMES, default="auto", help="default auto: the fastest available")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=tuple(BY_NAME),
        help=help_text(),
    )
    parser.add_argument(
        "--force-precision", action="store_true", help="run a precision that failed its accuracy gate anyway"
    )
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads of the backend (default: one per core)")


def backend_settings(args: argparse.Namespace, profile: BuildProfile | None = None) -> BackendSettings:
    """The `BackendSettings` of the options `add_backend_arguments` added (and the command's `profile`, if it has
    one); raises BackendError on a bad value."""
    return BackendSettings(args.backend, args.precision, args.force_precision, args.threads, profile)
