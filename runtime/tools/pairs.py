"""Evaluation pairs: the `pairs.json` format that `models.make_pairs` writes and the evaluation, the sensitivity
study and the accuracy gates read. Each entry names a blurry image and its sharp original (files beside
`pairs.json`), the focal length in pixels and the true trajectory `(P, 3)` radians.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
        listing = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise PairsError(f"{path}: cannot read ({error})") from None
    except json.JSONDecodeError as error:
        raise PairsError(f"{path}: not valid JSON ({error})") from None
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
    label = f"entry [{index}]" + (f" ({entry['name']!r})" if isinstance(entry.get("name"), str) else "")

    def refuse(reason: str) -> PairsError:
        return PairsError(f"{path}: {label}: {reason}")

    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise refuse("missing " + ", ".join(repr(key) for key in missing))
    name = entry["name"]
    if not isinstance(name, str) or not name or name.startswith(".") or "/" in name or "\\" in name:
        raise refuse(f"name must be a file-name-safe string (no '/', not starting with '.'), got {name!r}")
    for key in ("blurry", "sharp"):
        if not isinstance(entry[key], str) or not entry[key]:
            raise refuse(f"{key!r} must be a file name in {path.parent}, got {entry[key]!r}")
    focal = entry["focal_length"]
    if isinstance(focal, bool) or not isinstance(focal, int | float) or not (math.isfinite(focal) and focal > 0):
        raise refuse(f"focal_length must be a positive number of pixels, got {focal!r}")
    try:
        trajectory = np.array(entry["trajectory"], dtype=np.float64)
    except (TypeError, ValueError):
        raise refuse(
            f"trajectory must be {n_positions}x3 numbers (radians), got a ragged or non-numeric list"
        ) from None
    if trajectory.shape != (n_positions, 3):
        raise refuse(f"trajectory must be {n_positions}x3 radians (pitch, yaw, roll), got shape {trajectory.shape}")
    if not np.isfinite(trajectory).all():
        raise refuse("trajectory holds a non-finite number")
    return Pair(name, path.parent / entry["blurry"], path.parent / entry["sharp"], float(focal), trajectory)
