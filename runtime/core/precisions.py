"""The precisions a bundle runs at: one table that the backends, the engine builder, the accuracy gates and the
command lines' choices and help all read.

A precision is either a way a backend runs the FP32 graphs (TensorRT engines at fp16/int8, OpenVINO's bf16 hint)
or a variant of the graphs the bundle holds, made beforehand by `calibration` and gated on accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Precision:
    """One precision: its name on the command line and in the manifest, and how each backend gets to it."""

    name: str
    #: One line for `--precision`'s help.
    summary: str
    #: TensorRT engines can be built at this precision (`python -m export.tensorrt --precision`).
    engine: bool = False
    #: The bundle variant a TensorRT engine is parsed from, by network typing ("weak": TensorRT 8.6/10 with an
    #: FP16 flag; "strong": TensorRT 11); absent: the FP32 graphs.
    engine_source: dict[str, str] = field(default_factory=dict)
    #: OpenVINO's inference-precision hint when it runs the FP32 graphs at this precision.
    openvino_hint: str | None = None
    #: The command that adds this variant to a bundle (`{bundle}` is filled in), when it is one.
    made_by: str | None = None


TABLE = (
    Precision("fp32", "full precision, every backend", engine=True, openvino_hint="f32"),
    Precision(
        "fp16",
        "TensorRT engines (geometry kept FP32), or the fp16 variant on onnxruntime GPU backends and TensorRT 11",
        engine=True,
        engine_source={"strong": "fp16"},
        made_by="python -m calibration.fp16 {bundle} --pairs PAIRS",
    ),
    Precision(
        "int8",
        "TensorRT engines from the int8-tensorrt variant",
        engine=True,
        engine_source={"weak": "int8-tensorrt", "strong": "int8-tensorrt"},
    ),
    Precision("bf16", "OpenVINO on CPUs with BF16 units", openvino_hint="bf16"),
    Precision(
        "int8-cpu",
        "the calibrated INT8 variant for onnxruntime and OpenVINO on the CPU",
        made_by="python -m calibration.int8 {bundle} --target cpu --images DIR",
    ),
    Precision(
        "int8-tensorrt",
        "the calibrated INT8 variant for TensorRT (symmetric QDQ)",
        made_by="python -m calibration.int8 {bundle} --target tensorrt --images DIR",
    ),
)
BY_NAME = {precision.name: precision for precision in TABLE}
#: Precisions TensorRT engines are built at.
ENGINE_PRECISIONS = tuple(precision.name for precision in TABLE if precision.engine)
#: OpenVINO's hints for the precisions it reaches from the FP32 graphs.
OPENVINO_HINTS = {p.name: p.openvino_hint for p in TABLE if p.openvino_hint is not None}
#: Graphs that run in FP32 whatever the nets' precision (the refinement's gradient needs it).
FP32_ONLY_ROLES = ("refine",)
#: Graphs a reduced-precision variant is judged on against FP32 before it may run.
GATED_ROLES = ("trajectory", "restoration")


def engine_source(precision: str, typing: str) -> str | None:
    """The bundle variant an engine of `precision` is parsed from on a network of `typing`, or None (FP32)."""
    return BY_NAME[precision].engine_source.get(typing) if precision in BY_NAME else None


def variant_command(variant: str, bundle: str) -> str:
    """The command that adds `variant` to `bundle`."""
    command = BY_NAME[variant].made_by
    assert command is not None, f"{variant} is not a bundle variant"
    return command.format(bundle=bundle)


def help_text() -> str:
    """`--precision`'s help: every precision with its one line."""
    return "; ".join(f"{p.name}: {p.summary}" for p in TABLE) + " (default fp32)"
