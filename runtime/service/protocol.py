"""The `deblur` model's wire format, and the checks and conversions on both sides of it. Pure numpy: no PyTriton.

Inputs (each with Triton's batch dimension first): `image` UINT8 `[-1, -1, 3]` RGB, optional `focal_length` FP32
`[1]` (pixels; default the longer side) and optional `trajectory` FP32 `[P, 3]` (radians; a known motion, which
skips the trajectory net). Outputs: `restored` UINT8 `[-1, -1, 3]` RGB and `trajectory` FP32 `[P, 3]`. `P` is the
bundle's number of poses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from runtime.core.limits import FOCAL_LENGTH_PX, IMAGE_PIXELS, ROTATION_RAD
from runtime.core.pixels import quantize

MODEL_NAME = "deblur"
IMAGE = "image"
FOCAL_LENGTH = "focal_length"
TRAJECTORY = "trajectory"
RESTORED = "restored"
#: The dtypes of the inputs and outputs as Triton's clients name them.
TRITON_DTYPES = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32"}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the model: its name, dtype, shape without the batch dimension (-1: any size), and
    whether a request may leave it out."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    optional: bool = False


def input_specs(n_positions: int) -> tuple[TensorSpec, ...]:
    """The model's inputs for a bundle of `n_positions` poses."""
    return (
        TensorSpec(IMAGE, np.dtype(np.uint8), (-1, -1, 3)),
        TensorSpec(FOCAL_LENGTH, np.dtype(np.float32), (1,), optional=True),
        TensorSpec(TRAJECTORY, np.dtype(np.float32), (n_positions, 3), optional=True),
    )


def output_specs(n_positions: int) -> tuple[TensorSpec, ...]:
    """The model's outputs for a bundle of `n_positions` poses."""
    return (
        TensorSpec(RESTORED, np.dtype(np.uint8), (-1, -1, 3)),
        TensorSpec(TRAJECTORY, np.dtype(np.float32), (n_positions, 3)),
    )


class RequestError(ValueError):
    """A request the model refuses; one line saying what is wrong with it."""


@dataclass(frozen=True)
class Frame:
    """One image of a request: its uint8 RGB pixels, its focal length in pixels (None: the default) and its known
    trajectory `(P, 3)` (None: estimate it)."""

    pixels: np.ndarray
    focal_length: float | None = None
    trajectory: np.ndarray | None = None

    @property
    def rgb(self) -> np.ndarray:
        """The image as `Deblurrer.restore` takes it: float32 RGB in [0, 1] (made when asked, so a checked batch
        holds no float copies)."""
        return self.pixels.astype(np.float32) / np.float32(255)


def frames(request: Mapping[str, np.ndarray], min_side: int, n_positions: int) -> list[Frame]:
    """The images of one request (its batch dimension may hold several), checked; RequestError says what is wrong.

    Triton itself refuses a wrong dtype or rank before the model sees a request; they are checked here too, for
    callers other than Triton.
    """
    if IMAGE not in request:
        raise RequestError(f"{IMAGE}: missing")
    images = _array(request, IMAGE, np.uint8, "B x H x W x 3 RGB")
    if images.ndim != 4 or images.shape[3] != 3:
        raise RequestError(f"{IMAGE}: expected B x H x W x 3 RGB, got shape {list(images.shape)}")
    count, height, width = images.shape[:3]
    if count < 1:
        raise RequestError(f"{IMAGE}: the batch is empty")
    if min(height, width) < min_side:
        raise RequestError(f"{IMAGE}: {width}x{height} is too small; the bundle needs at least {min_side} px a side")
    try:
        IMAGE_PIXELS.check(height * width, IMAGE)
    except ValueError as error:
        raise RequestError(str(error)) from None
    focal_lengths = _focal_lengths(request, count)
    trajectories = _trajectories(request, count, n_positions)
    return [
        Frame(
            images[index],
            None if focal_lengths is None else focal_lengths[index],
            None if trajectories is None else trajectories[index],
        )
        for index in range(count)
    ]


def _array(request: Mapping[str, np.ndarray], name: str, dtype: type, layout: str) -> np.ndarray:
    value = np.asarray(request[name])
    if value.dtype != dtype:
        raise RequestError(f"{name}: expected {np.dtype(dtype).name} {layout}, got {value.dtype.name}")
    return value


def _focal_lengths(request: Mapping[str, np.ndarray], count: int) -> list[float] | None:
    if FOCAL_LENGTH not in request:
        return None
    values = _array(request, FOCAL_LENGTH, np.float32, "pixels, one per image")
    if values.shape != (count, 1):
        raise RequestError(f"{FOCAL_LENGTH}: expected shape {[count, 1]} (one per image), got {list(values.shape)}")
    try:
        return [FOCAL_LENGTH_PX.check(float(value), FOCAL_LENGTH) for value in values[:, 0]]
    except ValueError as error:
        raise RequestError(str(error)) from None


def _trajectories(request: Mapping[str, np.ndarray], count: int, n_positions: int) -> np.ndarray | None:
    if TRAJECTORY not in request:
        return None
    values = _array(request, TRAJECTORY, np.float32, f"{n_positions} x 3 radians per image")
    expected = [count, n_positions, 3]
    if list(values.shape) != expected:
        raise RequestError(f"{TRAJECTORY}: expected shape {expected}, got {list(values.shape)}")
    if not np.isfinite(values).all():
        bad = int(np.argwhere(~np.isfinite(values).all(axis=2))[0][1])
        raise RequestError(f"{TRAJECTORY}: pose {bad} is not finite")
    try:
        ROTATION_RAD.check(float(values.flat[np.abs(values).argmax()]), TRAJECTORY)
    except ValueError as error:
        raise RequestError(str(error)) from None
    return values


def batch_refusal(index: int, count: int, error: RequestError) -> RequestError:
    """The error a batch of `count` requests is answered with when request `index` (from 0) is refused: PyTriton
    answers a batch as one, so its other requests fail with it."""
    if count == 1:
        return error
    return RequestError(f"request {index + 1} of {count} batched together: {error}; the whole batch is refused")


def response(restored: Sequence[np.ndarray], trajectories: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs of one request: its restored images (float RGB, clipped and rounded to uint8 here) and their
    trajectories, stacked on the batch dimension; ValueError when a value is not finite (it would be sent as a black
    image or a NaN trajectory)."""
    for what, values in (("restored image", restored), ("trajectory", trajectories)):
        if not all(np.isfinite(value).all() for value in values):
            raise ValueError(f"the {what} holds NaN or infinite values")
    return {
        RESTORED: np.stack([quantize(image) for image in restored]),
        TRAJECTORY: np.stack([np.asarray(poses, np.float32) for poses in trajectories]),
    }


def request_arrays(
    rgb: np.ndarray, focal_length: float | None = None, trajectory: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """A client's inputs for one image: float RGB in [0, 1] (rounded to uint8 here) or uint8 RGB, its focal length
    in pixels and its known trajectory, each with a batch dimension of one."""
    pixels = rgb if rgb.dtype == np.uint8 else quantize(rgb)
    arrays = {IMAGE: np.ascontiguousarray(pixels[None])}
    if focal_length is not None:
        arrays[FOCAL_LENGTH] = np.array([[focal_length]], np.float32)
    if trajectory is not None:
        arrays[TRAJECTORY] = np.ascontiguousarray(np.asarray(trajectory, np.float32)[None])
    return arrays


#: A line of a served error naming an exception and its message (Triton wraps the model's in PyTriton's traceback).
_EXCEPTION_LINE = re.compile(r"^\s*[\w.]*(?:Error|Exception): (.+)$", re.MULTILINE)


def error_line(message: str) -> str:
    """One line of a Triton error message: the innermost exception's message when it holds a traceback (the
    model's refusal), else its first non-empty line."""
    found = [text.strip() for text in _EXCEPTION_LINE.findall(message)]
    found = [text for text in found if not text.startswith("Traceback")]
    if found:
        return found[-1]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if lines else ""
