"""What the command line's INPUT arguments name: image files, videos, folders of them, globs, camera indices."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from runtime.io.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES


@dataclass(frozen=True)
class Source:
    """One thing to deblur: an image, a video or a camera, and the unique name its outputs go under."""

    kind: str  # "image" | "video" | "camera"
    location: Path | int
    name: str


def expand(arguments: list[str]) -> tuple[list[Source], list[str]]:
    """Sources in argument order (folders and globs sorted), and one error line per argument that names none."""
    found: list[tuple[str, Path | int]] = []
    errors: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            media = [p for p in sorted(path.iterdir()) if p.is_file() and _kind(p) is not None]
            if not media:
                errors.append(f"{path}: folder holds no images or videos")
            found += [(_kind(p) or "image", p) for p in media]
        elif path.is_file():
            found.append((_kind(path) or "image", path))
        elif argument.isdigit():
            found.append(("camera", int(argument)))
        elif glob.has_magic(argument):
            matches = [Path(p) for p in sorted(glob.glob(argument)) if Path(p).is_file()]
            if not matches:
                errors.append(f"{argument}: pattern matches no file")
            found += [(_kind(p) or "image", p) for p in matches]
        else:
            errors.append(f"{argument}: no such file, folder or camera index")
    return _named(found), errors


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def _named(found: list[tuple[str, Path | int]]) -> list[Source]:
    """Output names from file stems (`camera0` for cameras), made unique with `_2`, `_3`, ... in order.

    Leading dots are dropped: a stem such as `..` (of `...png`) would name the output folder's parent, and hidden
    names are the result folders' temporary ones (`runtime.io.results`); a stem of dots only becomes `image`.
    """
    sources, used = [], set()
    for kind, location in found:
        stem = f"camera{location}" if isinstance(location, int) else location.stem.lstrip(".") or "image"
        name, count = stem, 1
        while name in used:
            count += 1
            name = f"{stem}_{count}"
        used.add(name)
        sources.append(Source(kind, location, name))
    return sources
