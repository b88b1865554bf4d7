"""The small text files the runtime is handed (trajectory files, camera presets, lens profiles, pairs.json), read
within bounds: a file larger than `TEXT_FILE_BYTES` or a JSON document nested deeper than `JSON_DEPTH` is refused in
one line before it can exhaust memory or the parser's stack. The readers put the file's name in front.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.core.limits import JSON_DEPTH, TEXT_FILE_BYTES, LimitError


class TextFileError(ValueError):
    """A text file that cannot be read within bounds; one line saying why, without the file's name."""


def read_text(path: Path, what: str) -> str:
    """The UTF-8 content of a file of at most `TEXT_FILE_BYTES`; else TextFileError saying it cannot be read as
    `what` (missing, a folder, binary) or is too large (only that much is read, whatever the file)."""
    limit = int(TEXT_FILE_BYTES.high)
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except OSError as error:
        raise TextFileError(f"cannot read {what} ({error.strerror or error})") from None
    if len(data) > limit:
        try:
            size = path.stat().st_size
        except OSError:
            size = len(data)
        try:
            TEXT_FILE_BYTES.check(max(size, len(data)), what)
        except LimitError as error:
            raise TextFileError(str(error)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TextFileError(f"cannot read {what} (not a text file)") from None


def parse_json(text: str) -> Any:
    """A JSON document nested at most `JSON_DEPTH` levels; else TextFileError saying why (invalid, too deep)."""
    try:
        document = json.loads(text)
    except RecursionError:
        limit = f"{JSON_DEPTH.low:g}..{JSON_DEPTH.high:g} {JSON_DEPTH.unit}"
        raise TextFileError(f"JSON nested too deep to parse; {JSON_DEPTH.quantity} must be within {limit}") from None
    except ValueError as error:  # invalid JSON, or an integer of more digits than Python converts
        raise TextFileError(f"not valid JSON ({str(error).splitlines()[0]})") from None
    try:
        JSON_DEPTH.check(nesting(document))
    except LimitError as error:
        raise TextFileError(str(error)) from None
    return document


def nesting(document: object) -> int:
    """How deeply lists and objects nest in a parsed JSON document: 0 for a number, 1 for `[1]`, 2 for `[[1]]`."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest
