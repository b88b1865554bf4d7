"""The physical bounds the runtime holds every value to, wherever it comes from (options, files, EXIF, manifests).

A value outside its bound is refused with one line naming the value, the limit and where the value came from:
an absurd focal length from a photo's EXIF or a gyroscope rate of 1e6 rad/s would otherwise run to a black image
or a NaN far from its cause. `docs/bad-input.md` lists the limits with the reasons below.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


class LimitError(ValueError):
    """A value outside its physical bound; one line naming the value, the limit and its source."""


@dataclass(frozen=True)
class Limit:
    """A closed range `[low, high]` of a quantity, with its unit and why it is bounded there."""

    quantity: str
    low: float
    high: float
    unit: str
    reason: str

    def check(self, value: object, source: str = "") -> float:
        """`value` as a float when it is a finite number within the range; else LimitError naming `source`."""
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            raise LimitError(f"{self._where(source)}{self.quantity} {value!r:.60} is not a number") from None
        if not (math.isfinite(number) and self.low <= number <= self.high):
            raise LimitError(
                f"{self._where(source)}{self.quantity} {_shown(number, repr)}{self._unit} is outside "
                f"{_shown(self.low)}..{_shown(self.high)}{self._unit}"
            )
        return number

    def check_all(self, values: npt.ArrayLike, source: Callable[[tuple[int, ...]], str]) -> np.ndarray:
        """`values` as a float64 array when every one is within the range; else LimitError for the first outside
        (in C order), `source(index)` naming where it came from."""
        array = np.asarray(values, dtype=np.float64)
        inside = (array >= self.low) & (array <= self.high)
        if not inside.all():
            index = tuple(int(i) for i in np.argwhere(~inside)[0])
            self.check(float(array[index]), source(index))
        return array

    @property
    def _unit(self) -> str:
        return f" {self.unit}" if self.unit else ""

    @staticmethod
    def _where(source: str) -> str:
        return f"{source}: " if source else ""


def _shown(number: float, fraction: Callable[[float], str] = "{:g}".format) -> str:
    """A number as people write it: whole numbers in full (16777216, not 1.67772e+07), others by `fraction`."""
    number = float(number)
    return str(int(number)) if number.is_integer() and abs(number) < 1e16 else fraction(number)


#: Focal length in pixels: a 1 px focal length or one of a million pixels (a 2000 mm lens on a 100 MP sensor is
#: ~0.7 M px) describes no camera.
FOCAL_LENGTH_PX = Limit("focal length", 1.0, 1e6, "px", "no real camera lies outside")
#: Noise level given to the restoration, in image units (pixel values in [0, 1]).
SIGMA = Limit("sigma (the noise level)", 0.0, 0.5, "", "noise above half the pixel range leaves no image")
#: pi/4 as float32: the nets clamp their estimates in float32, whose pi/4 lies 2e-8 above the float64 one.
_QUARTER_TURN_FLOAT32 = struct.unpack("f", struct.pack("f", math.pi / 4))[0]
#: Largest rotation of any pose, radians: the reference clamps its estimates to pi/4, and the homographies of the
#: blur model degenerate towards pi/2.
ROTATION_RAD = Limit(
    "rotation", -_QUARTER_TURN_FLOAT32, _QUARTER_TURN_FLOAT32, "rad", "the reference clamps poses to +-pi/4"
)
#: Largest angular rate of a gyroscope sample, rad/s: common MEMS gyroscopes measure at most +-2000 deg/s (34.9).
GYRO_RATE_RAD_S = Limit("gyroscope rate", -40.0, 40.0, "rad/s", "above the full scale of common gyroscopes")
#: A lens's principal point, as a fraction of its calibrated frame's width or height from the top-left corner.
PRINCIPAL_POINT_FRACTION = Limit("principal point", 0.0, 1.0, "of the frame", "a lens centre lies inside its frame")
#: The smallest image side a bundle accepts (`min_side` in its manifest): the trajectory net pools five times.
MIN_SIDE_PX = Limit("min_side", 32, 4096, "px", "the trajectory net pools five times (2^5 = 32)")
#: Image size in pixels (width x height) the runtime reads: Pillow's decompression-bomb threshold.
IMAGE_PIXELS = Limit("image size", 1, 178_956_970, "pixels", "Pillow refuses larger images as decompression bombs")

#: Size of a text file the runtime reads whole (trajectory file, camera preset, lens profile, pairs.json): the
#: largest of them holds a few thousand numbers, well under a megabyte.
TEXT_FILE_BYTES = Limit("file size", 0, 16 * 2**20, "bytes", "these files hold a few thousand numbers at most")
#: Nesting of a JSON document the runtime reads: pairs.json, the deepest, nests 4 levels (list, entry, trajectory,
#: pose); a deeper document is no file of ours, and a very deep one exhausts the parser's stack.
JSON_DEPTH = Limit("JSON nesting", 0, 32, "levels", "the runtime's JSON files nest 4 levels at most")

LIMITS = (
    FOCAL_LENGTH_PX,
    SIGMA,
    ROTATION_RAD,
    GYRO_RATE_RAD_S,
    PRINCIPAL_POINT_FRACTION,
    MIN_SIDE_PX,
    IMAGE_PIXELS,
    TEXT_FILE_BYTES,
    JSON_DEPTH,
)
