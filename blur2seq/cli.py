"""`blur2seq SUBCOMMAND [ARGS...]`: every command of the project under one name.

One table names each subcommand, the module whose `main(argv) -> int` runs it, and what it does in one line. A
module is imported only when its subcommand runs: `blur2seq --help` stays instant, and `blur2seq deblur` never
imports PyTorch (the runtime has none), so it works on a device with the plain install.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Subcommand:
    """A subcommand: its name, the module whose `main(argv)` runs it, and a one-line summary for the help."""

    name: str
    module: str
    summary: str


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("deblur", "runtime.io.deblur", "deblur photos, folders, videos or a camera with a bundle (torch-free)"),
    Subcommand("evaluate", "runtime.tools.evaluate", "measure a bundle on (blurry, sharp) pairs with known motion"),
    Subcommand("benchmark", "runtime.tools.benchmark", "per-stage latency of a bundle; backends, precisions compared"),
    Subcommand("sensitivity", "runtime.tools.sensitivity", "restored quality against trajectory error, on pairs"),
    Subcommand("sync", "runtime.tools.sync", "a gyroscope log's clock offset, drift and axes, found from a video"),
    Subcommand("serve", "runtime.service.server", "serve a bundle on Triton Inference Server (PyTriton; serve extra)"),
    Subcommand("client", "runtime.service.client", "deblur files through a running server (serve extra)"),
    Subcommand("export", "export.onnx", "export checkpoints to an ONNX bundle and check it (needs torch)"),
    Subcommand("refine-graph", "export.refine", "add the refinement graph to a bundle (needs torch)"),
    Subcommand("lint", "export.lint", "check ONNX graphs or bundles against TensorRT's ONNX parser"),
    Subcommand("build", "runtime.core.backends.tensorrt_build", "build TensorRT engines into a bundle"),
    Subcommand("triton", "export.triton", "write a Triton Inference Server model repository from a bundle"),
    Subcommand("calibrate", "calibration.int8", "INT8 variants of a bundle, calibrated on images, gated on accuracy"),
    Subcommand("fp16", "calibration.fp16", "the mixed-precision variant: FP16 with FP32 geometry, gated on accuracy"),
    Subcommand("train", "models.train", "train the compact nets on synthetic camera shake, on the CPU (needs torch)"),
    Subcommand("make-pairs", "models.make_pairs", "make (blurry, sharp) evaluation pairs (needs torch)"),
    Subcommand("checkpoint", "models.checkpoint", "describe checkpoint files (needs torch)"),
    Subcommand("model-benchmark", "models.benchmark", "time the PyTorch reference and its blur operator (needs torch)"),
)

#: The modules of the optional `export` extra that the plain install lacks; a subcommand missing one says how to
#: install it. The CPU build of torch goes first: an unpinned torch pulls a multi-GB CUDA build.
EXPORT_EXTRA = ("torch", "onnxscript")
INSTALL_EXPORT = 'pip install torch==2.13.0, then pip install -e ".[export]"'


def help_text() -> str:
    """The command's help: usage and every subcommand with its summary."""
    width = max(len(command.name) for command in SUBCOMMANDS)
    lines = [
        "usage: blur2seq SUBCOMMAND [ARGS...]",
        "",
        "Blur2Seq camera-shake deblurring: the runtime, its measurement tools, export, calibration and training.",
        "",
        "subcommands:",
        *(f"  {command.name:<{width}}  {command.summary}" for command in SUBCOMMANDS),
        "",
        "`blur2seq SUBCOMMAND --help` shows a subcommand's own arguments.",
    ]
    return "\n".join(lines) + "\n"


def find(name: str) -> Subcommand | None:
    """The table's entry for `name`, or None."""
    return next((command for command in SUBCOMMANDS if command.name == name), None)


def run(command: Subcommand, argv: Sequence[str]) -> int:
    """Import the subcommand's module and run its `main` on `argv`: its exit code, argparse's exits included.

    A module of the export extra missing (torch, at import or later) is one line saying how to install it, exit 2.
    """
    try:
        return importlib.import_module(command.module).main(list(argv))
    except ModuleNotFoundError as error:
        missing = (error.name or "").partition(".")[0]
        if missing not in EXPORT_EXTRA:
            raise
        print(f"blur2seq {command.name}: needs {missing} (the export extra): {INSTALL_EXPORT}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2), its message already printed
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """The `blur2seq` console script: dispatch to the subcommand named first; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments:
        print(help_text(), end="", file=sys.stderr)
        return 2
    name, rest = arguments[0], arguments[1:]
    if name in ("-h", "--help"):
        print(help_text(), end="")
        return 0
    command = find(name)
    if command is None:
        close = difflib.get_close_matches(name, [command.name for command in SUBCOMMANDS], n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        print(f"blur2seq: unknown subcommand {name!r}{hint} (blur2seq --help lists them)", file=sys.stderr)
        return 2
    return run(command, rest)
