"""A one-line progress display on stderr, for the commands that work through many files, frames or tiles."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    """A one-line progress display on stderr (rewritten in place on a terminal, one line per step otherwise)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def __call__(self, text: str) -> None:
        if self.live:
            self.stream.write(f"\r\033[K{text}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.live:
            self.stream.write("\n")
