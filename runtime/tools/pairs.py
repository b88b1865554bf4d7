"""Evaluation pairs: the `pairs.json` format that `models.make_pairs` writes and the evaluation, the sensitivity
study and the accuracy gates read. Each entry names a blurry image and its sharp original (plain file names in the
folder of `pairs.json`, which no name or link may leave), the focal length in pixels and the true trajectory
`(P, 3)` radians, both within their `runtime.core.limits`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.core import textfiles
from runtime.core.limits import FOCAL_LENGTH_PX, ROTATION_RAD, LimitError
from runtime.core.motion import ANGLE_NAMES

PAIRS_FILE = "pairs.json"
REQUIRED_KEYS = ("name", "blurry", "sharp", "focal_length", "trajectory")


class PairsError(ValueError):
    """A pairs.json that cannot be used; one line naming the file and the entry."""


@dataclass(frozen=True)
class Pair:
    """One evaluation pair: image paths, focal length (px) and true trajectory `(P, 3)` radians."""

    name: str
    blurry: Path
    sharp: Path
    focal_length: float
    trajectory: np.ndarray


def read_pairs(directory: Path, n_positions: int = 25) -> list[Pair]:
    """The pairs listed in `directory/pairs.json`, checked entry by entry (image files are checked when used)."""
    path = directory / PAIRS_FILE
    if not path.is_file():
        raise PairsError(f"{path}: no such file" + ("" if directory.is_dir() else f" ({directory} is not a folder)"))
    try:
        listing = textfiles.parse_json(textfiles.read_text(path, "the pairs listing"))
    except textfiles.TextFileError as error:
        raise PairsError(f"{path}: {error}") from None
    if not isinstance(listing, list) or not listing:
        raise PairsError(f"{path}: expected a non-empty JSON list of pair objects")
    pairs = [_pair(path, index, entry, n_positions) for index, entry in enumerate(listing)]
    seen: set[str] = set()
    for index, pair in enumerate(pairs):
        if pair.name in seen:
            raise PairsError(f"{path}: entry [{index}] ({pair.name!r}): the name is used by an earlier entry")
        seen.add(pair.name)
    return pairs


def _pair(path: Path, index: int, entry: object, n_positions: int) -> Pair:
    """One entry of pairs.json as a `Pair`, or a PairsError naming the file, the entry and what is wrong."""
    if not isinstance(entry, dict):
        raise PairsError(f"{path}: entry [{index}] is not a JSON object")
    label = f"entry [{index}]" + (f" ({entry['name']!r:.60})" if isinstance(entry.get("name"), str) else "")

    def refuse(reason: str) -> PairsError:
        return PairsError(f"{path}: {label}: {reason}")

    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise refuse("missing " + ", ".join(repr(key) for key in missing))
    name = entry["name"]
    if not isinstance(name, str) or not name or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise refuse(f"name must be a file-name-safe string (no '/', not starting with '.'), got {name!r:.60}")
    images = {key: _image_path(path.parent, key, entry[key], refuse) for key in ("blurry", "sharp")}
    focal = entry["focal_length"]
    if isinstance(focal, bool) or not isinstance(focal, int | float) or not (_finite(focal) and focal > 0):
        raise refuse(f"focal_length must be a positive number of pixels, got {focal!r:.60}")
    try:
        trajectory = np.array(entry["trajectory"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise refuse(
            f"trajectory must be {n_positions}x3 numbers (radians), got a ragged or non-numeric list"
        ) from None
    if trajectory.shape != (n_positions, 3):
        raise refuse(f"trajectory must be {n_positions}x3 radians (pitch, yaw, roll), got shape {trajectory.shape}")
    if not np.isfinite(trajectory).all():
        raise refuse("trajectory holds a non-finite number")
    try:
        FOCAL_LENGTH_PX.check(focal, "focal_length")
        ROTATION_RAD.check_all(trajectory, lambda index: f"trajectory pose {index[0]} {ANGLE_NAMES[index[1]]}")
    except LimitError as error:
        raise refuse(str(error)) from None
    return Pair(name, images["blurry"], images["sharp"], float(focal), trajectory)


def _finite(number: float) -> bool:
    """Whether a JSON number is finite (an integer too large for a float is not)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def _image_path(folder: Path, key: str, name: object, refuse: Callable[[str], PairsError]) -> Path:
    """The image `name` names in `folder`: a plain file name (no folder, not `.` or `..`) that resolves inside
    `folder`, through any link; else `refuse`'s PairsError."""
    plain = isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")
    if not plain:
        raise refuse(f"{key!r} must be a plain file name in {folder}, got {name!r:.100}")
    image = folder / name  # type: ignore[operator]
    try:
        inside = image.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError) as error:  # RuntimeError: a loop of links
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise refuse(f"{key!r} {name!r:.60} cannot be resolved in {folder} ({reason})") from None
    if not inside:
        raise refuse(f"{key!r} {name!r:.60} is a link leading outside {folder}")
    return image
