"""What TensorRT's ONNX parser accepts, per TensorRT version: the data behind `export.lint`, in one place.

The table is a list of releases, each recording only what changed (as the onnx-tensorrt changelog does); the
profile of any version folds every release up to it. Sources, read 2026-11:
  [ops85]   onnx-tensorrt docs/operators.md for TensorRT 8.5 (operator matrix, "up to opset 17");
  [ops1015] onnx-tensorrt docs/operators.md for TensorRT 10.15 (operator matrix, "opset 9 to opset 24");
  [log]     onnx-tensorrt Changelog, TensorRT 8.2 ... 10.15;
  [rel11]   NVIDIA/TensorRT release notes 11.0, 11.2, 11.2.1, 11.5;
  [design]  docs/DESIGN.md section 4 (8.6 up to opset 17; 10.0 accepts opset 9-20; GridSample facts);
  [#4646]   NVIDIA/TensorRT#4646 and its fix onnx/onnx-tensorrt#1060 (still open when read).
A fact marked "assumed" was not found in these; the lint errs on the side of rejecting.
Not modelled: per-op dtype restrictions, and inputs that must be build-time constants (Slice/Pad/Squeeze axes,
TopK K, CumSum axis): exporters emit those as constants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from onnx import TensorProto

DEFAULT_TRT_VERSION = "8.5"
"""The oldest TensorRT we target: JetPack 5.1 ships 8.5.2."""

# JetPack -> TensorRT [design]: 5.1 -> 8.5.2; 6.0 -> 8.6.2; 6.1/6.2 -> 10.3; 7.x (Thor) -> 10.13+; 7.2.2 -> 11.


@dataclass(frozen=True)
class Release:
    """What one TensorRT release changed in its ONNX parser; `None` / empty means unchanged."""

    version: tuple[int, int]
    source: str
    opset_min: int | None = None
    opset_max: int | None = None
    added_ops: frozenset[str] = frozenset()
    added_dtypes: frozenset[int] = frozenset()
    added_pad_modes: frozenset[str] = frozenset()
    gridsample_max_rank: int | None = None
    local_functions: bool | None = None
    scatter_reduction: bool | None = None


# Operators of the default ONNX domain marked supported ("Y") in the TensorRT 8.5 matrix [ops85]. Among them
# everything a conv net plus our geometry uses. Atan2 is not an ONNX op: torch exports atan2 as Atan, Div, Where,
# Add/Sub and comparisons, all listed here. Einsum: no ellipsis, diagonal or broadcasting before 10.12 [log]
# (not checked). NonZero, NonMaxSuppression, If, Loop, Scan and the Random* ops are parsed but forbidden by our
# policy (POLICY_FORBIDDEN_OPS below).
_OPS_8_5 = frozenset(
    {
        "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
        "AveragePool", "BatchNormalization", "Cast", "Ceil", "Celu", "Clip", "Concat", "Constant",
        "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace", "DequantizeLinear",
        "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor",
        "Gather", "GatherElements", "GatherND", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool",
        "Greater", "GreaterOrEqual", "GridSample", "GRU", "HardSigmoid", "HardSwish", "Identity", "If",
        "ImageScaler", "InstanceNormalization", "IsNaN", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax",
        "Loop", "LRN", "LSTM", "LpNormalization", "LpPool", "MatMul", "Max", "MaxPool", "Mean",
        "MeanVarianceNormalization", "Min", "Mod", "Mul", "Neg", "NonMaxSuppression", "NonZero", "Not", "OneHot",
        "Or", "Pad", "ParametricSoftplus", "Pow", "PRelu", "QuantizeLinear", "RandomNormal", "RandomNormalLike",
        "RandomUniform", "RandomUniformLike", "Range", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum",
        "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare",
        "Relu", "Reshape", "Resize", "ReverseSequence", "RNN", "RoiAlign", "Round", "ScaledTanh", "Scan",
        "Scatter", "ScatterElements", "ScatterND", "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh",
        "Size", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub",
        "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze", "Upsample",
        "Where", "Xor",
    }
)  # fmt: skip

RELEASES: tuple[Release, ...] = (
    Release(
        (8, 5),
        "[ops85], [log] 8.5: GridSample, NonZero, Mod, Trilu, RoiAlign added; UINT8 network I/O",
        # [ops85] gives only the upper bound; no lower bound is documented (ours are >= 16 anyway).
        opset_min=1,
        opset_max=17,
        added_ops=_OPS_8_5,
        # INT64 is accepted and cast down to INT32 by the parser [ops85]; INT8 is for Q/DQ.
        added_dtypes=frozenset(
            {
                TensorProto.FLOAT,
                TensorProto.FLOAT16,
                TensorProto.INT32,
                TensorProto.INT64,
                TensorProto.INT8,
                TensorProto.BOOL,
            }
        ),
        added_pad_modes=frozenset({"constant", "reflect", "edge"}),  # edge and reflect since 8.2 [log]
        gridsample_max_rank=4,
        local_functions=False,  # ONNX local functions: parser support from 9.0 [log]
        scatter_reduction=False,  # ScatterElements `reduction`: from 10.0 [log]
    ),
    Release(
        (8, 6),
        "[design] opset <= 17; [log] 8.6 EA: GroupNormalization, LayerNormalization, IsInf",
        added_ops=frozenset({"GroupNormalization", "LayerNormalization", "IsInf"}),
    ),
    Release(
        (10, 0),
        "[design] opset 9-20; [log] 9.0-9.3 and 10.0 EA (9.x is not a target; its changes are folded in here)",
        opset_min=9,
        opset_max=20,
        added_ops=frozenset({"Hardmax"}),  # 9.2
        # 9.0: native INT64, BF16 and FP8 (TensorRT's FP8 is E4M3); 10.0: INT4 quantization.
        added_dtypes=frozenset({TensorProto.BFLOAT16, TensorProto.FLOAT8E4M3FN, TensorProto.INT4}),
        added_pad_modes=frozenset({"wrap"}),
        local_functions=True,
        scatter_reduction=True,
    ),
    Release((10, 1), "[log] 10.1", added_ops=frozenset({"DeformConv"})),
    Release((10, 4), "[log] 10.4", added_ops=frozenset({"BlackmanWindow", "HammingWindow", "HannWindow"})),
    Release((10, 5), "[log] 10.5 (real-valued STFT only)", added_ops=frozenset({"STFT"})),
    Release((10, 8), "[log] 10.8", added_dtypes=frozenset({TensorProto.FLOAT4E2M1})),
    Release((10, 14), "[log] 10.14", added_ops=frozenset({"Attention"})),
    Release(
        (10, 15),
        "[ops1015], [log] 10.15",
        # Confirmed for 10.15. 10.1-10.14 surely accept more than opset 20 (the ONNX submodule went to 1.17 in
        # 10.6, 1.18 in 10.11) but we found no stated range, so they keep 10.0's: assumed, conservative.
        opset_max=24,
        # Gelu, Mish and CastLike are first seen in the 10.15 matrix: they may be older (assumed, conservative).
        added_ops=frozenset({"RotaryEmbedding", "RMSNormalization", "TensorScatter", "Gelu", "Mish", "CastLike"}),
    ),
    # 11.0-11.4: no stated opset range found; assumed the same as 10.15 (9-24). [rel11] states 25 from 11.5.
    # Assumed too: 11.x removed no parser op (its notes list removed plugins only).
    Release((11, 0), "[rel11] 11.0", added_ops=frozenset({"Swish"})),
    Release(
        (11, 2),
        "[rel11] 11.2: DFT (cuFFT plugin), 5-D GridSample",
        added_ops=frozenset({"DFT"}),
        gridsample_max_rank=5,
    ),
    Release((11, 5), "[rel11] 11.5", opset_max=25),
)

# "10" means 10.0 (the conservative reading); 10.x and 11.x for any minor fold the releases up to it. TensorRT 9
# was a limited release that no JetPack carries: not a target.
_KNOWN_MAJORS: dict[int, frozenset[int] | None] = {8: frozenset({5, 6}), 10: None, 11: None}

ALL_VERSIONS: tuple[str, ...] = tuple(f"{major}.{minor}" for major, minor in (r.version for r in RELEASES))
"""Every version the table distinguishes, oldest first: what `--trt-version all` checks."""

KNOWN_VERSIONS_TEXT = "8.5, 8.6, 10 or 10.<minor>, 11 or 11.<minor> (patch levels ignored), or 'all'"

# --- Operators forbidden whatever the parser says, and notes for ones it lacks. ---------------------------------

POLICY_FORBIDDEN_OPS: dict[str, str] = {
    "NonZero": "data-dependent output shape (the parser takes it from 8.5, but our engines have shapes fixed by "
    "their profile)",
    "NonMaxSuppression": "data-dependent output shape",
    "Unique": "data-dependent output shape",
    "Compress": "data-dependent output shape",
    "If": "control flow: our graphs must be straight-line",
    "Loop": "control flow: our graphs must be straight-line (unroll it at export)",
    "Scan": "control flow: our graphs must be straight-line (unroll it at export)",
    "RandomNormal": "non-deterministic (TensorRT ignores the seed)",
    "RandomNormalLike": "non-deterministic (TensorRT ignores the seed)",
    "RandomUniform": "non-deterministic (TensorRT ignores the seed)",
    "RandomUniformLike": "non-deterministic (TensorRT ignores the seed)",
    "Bernoulli": "non-deterministic",
    "Multinomial": "non-deterministic",
}

UNSUPPORTED_OP_NOTES: dict[str, str] = {
    "Inverse": "TensorRT has no matrix-inverse layer (and ONNX no Inverse op; this is com.microsoft's): compute "
    "the inverse analytically, as models/geometry.py does for K R K^-1",
    "Det": "TensorRT has no determinant layer: compute it analytically",
}

# Ops outside the default ONNX domain (com.microsoft, ...) need a TensorRT plugin. None is allowed for now.
ALLOWED_CUSTOM_OPS: frozenset[tuple[str, str]] = frozenset()

# --- Attribute values (the same in every version unless stated). -------------------------------------------------

# The parser reads GridSample's mode as 'bilinear' / 'nearest' / 'bicubic' (the opset 16-19 spellings) and runs
# anything else, including opset 20's 'linear' and 'cubic', as nearest without a warning: seen with 10.13 and
# 11.1 [#4646]; no release with the fix is known, so every version is treated as affected.
GRIDSAMPLE_MODES = frozenset({"bilinear", "nearest", "bicubic"})
GRIDSAMPLE_MISREAD_MODES: dict[str, str] = {"linear": "bilinear", "cubic": "bicubic"}
# IGridSampleLayer sample modes kFILL / kCLAMP / kREFLECT [design].
GRIDSAMPLE_PADDING_MODES = frozenset({"zeros", "border", "reflection"})

# Resize [ops85] and unchanged in [ops1015]. IResizeLayer has a cubic mode, but the parser's documented modes are
# nearest and linear only, so 'cubic' is rejected (it may in fact parse: unverified). Antialiasing and any
# keep_aspect_ratio_policy but 'stretch' are unsupported [ops1015].
RESIZE_MODES = frozenset({"nearest", "linear"})
RESIZE_COORDINATE_MODES = frozenset(
    {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
)
RESIZE_NEAREST_MODES = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})

# --- Tensor dtypes. ----------------------------------------------------------------------------------------------

# Network inputs and outputs only: UINT8 from 8.5 [log], still I/O-only in [ops1015]. TensorRT's Q/DQ is INT8.
IO_ONLY_DTYPES = frozenset({TensorProto.UINT8})
# The parser casts DOUBLE down to FLOAT, clamping to +-FLT_MAX [ops85]: so the engine would not compute the graph
# we tested, and our I/O contract is FP32. Forbidden by policy.
POLICY_FORBIDDEN_DTYPES: dict[int, str] = {
    TensorProto.DOUBLE: "TensorRT has no FP64: the parser silently casts it to FP32 (clamping); keep the graph FP32",
}


@dataclass(frozen=True)
class Profile:
    """Everything the lint needs to know about one TensorRT version: the fold of `RELEASES` up to it."""

    name: str
    opset_min: int
    opset_max: int
    ops: frozenset[str]
    dtypes: frozenset[int]
    pad_modes: frozenset[str]
    gridsample_max_rank: int
    local_functions: bool
    scatter_reduction: bool


def parse_version(text: str) -> tuple[int, int]:
    """`'10.3'`, `'10.3.0.26'`, `'10'` -> `(major, minor)`; ValueError naming the known versions otherwise."""
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:\.\d+){0,2}", text.strip())
    major, minor = (int(match.group(1)), int(match.group(2) or 0)) if match else (-1, -1)
    minors = _KNOWN_MAJORS.get(major, frozenset())  # None: any minor of that major
    if minors is not None and minor not in minors:
        raise ValueError(f"unknown TensorRT version {text!r}: known: {KNOWN_VERSIONS_TEXT}")
    return major, minor


def profile_for(version: str) -> Profile:
    """The profile of a TensorRT version such as `'8.5'`, `'10'` or `'10.3'` (ValueError if unknown)."""
    wanted = parse_version(version)
    opset_min = opset_max = gridsample_max_rank = 0
    local_functions = scatter_reduction = False
    ops: frozenset[str] = frozenset()
    dtypes: frozenset[int] = frozenset()
    pad_modes: frozenset[str] = frozenset()
    for release in RELEASES:
        if release.version > wanted:
            break
        opset_min = release.opset_min if release.opset_min is not None else opset_min
        opset_max = release.opset_max if release.opset_max is not None else opset_max
        gridsample_max_rank = (
            release.gridsample_max_rank if release.gridsample_max_rank is not None else gridsample_max_rank
        )
        local_functions = release.local_functions if release.local_functions is not None else local_functions
        scatter_reduction = release.scatter_reduction if release.scatter_reduction is not None else scatter_reduction
        ops |= release.added_ops
        dtypes |= release.added_dtypes
        pad_modes |= release.added_pad_modes
    return Profile(
        name=f"{wanted[0]}.{wanted[1]}",
        opset_min=opset_min,
        opset_max=opset_max,
        ops=ops,
        dtypes=dtypes,
        pad_modes=pad_modes,
        gridsample_max_rank=gridsample_max_rank,
        local_functions=local_functions,
        scatter_reduction=scatter_reduction,
    )


def _first_release(added: str) -> dict[object, str]:
    """Item -> the first version whose release adds it to the set attribute `added` of `Release`."""
    first: dict[object, str] = {}
    for release in RELEASES:
        for item in getattr(release, added):
            first.setdefault(item, f"{release.version[0]}.{release.version[1]}")
    return first


_OP_SINCE = _first_release("added_ops")
_DTYPE_SINCE = _first_release("added_dtypes")
_PAD_MODE_SINCE = _first_release("added_pad_modes")


def op_since(op_type: str) -> str | None:
    """The first TensorRT version in the table whose parser supports `op_type`, or None if none does."""
    return _OP_SINCE.get(op_type)


def dtype_since(elem_type: int) -> str | None:
    """The first TensorRT version in the table that supports this ONNX tensor dtype, or None."""
    return _DTYPE_SINCE.get(elem_type)


def pad_mode_since(mode: str) -> str | None:
    """The first TensorRT version in the table whose parser supports this Pad mode, or None."""
    return _PAD_MODE_SINCE.get(mode)
