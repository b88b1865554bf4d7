"""Ctrl-C and SIGTERM during a batch: a request to stop at the next safe point, not an exception mid-write.

The signal handler only records the request (and says it is heard); the batch checks it between steps (after
reading, after restoring, after reblurring, after each sharp frame written, before each video frame), so a file is
never left half-written, the source at hand leaves nothing, and the summary is still printed. A second signal
changes nothing. The batch then exits with `EXIT_CODES`: 128 plus the signal's number, as a shell reports a
process the signal ended.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: The exit status of a batch stopped by each signal.
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(BaseException):
    """Raised at a safe point once a stop was requested: not an error of the source at hand, so a BaseException
    that the per-source error handling lets through."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequest:
    """Whether, and by which signal, the batch was asked to stop. `handling_signals` installs the handlers that
    record SIGINT and SIGTERM; `check` raises Interrupted once one came."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str | None:
        """The signal's name (`SIGINT`, `SIGTERM`), None when no stop was requested."""
        return None if self.signum is None else signal.Signals(self.signum).name

    def request(self, signum: int) -> None:
        """Ask to stop; the first request's signal is the one reported."""
        if self.signum is None:
            self.signum = signum

    def check(self) -> None:
        """Raise Interrupted when a stop was requested."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    @contextmanager
    def handling_signals(self) -> Iterator[StopRequest]:
        """Record SIGINT and SIGTERM instead of their default actions while the block runs (Python lets only the
        main thread set handlers; elsewhere nothing is installed and Ctrl-C stays a KeyboardInterrupt)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {number: signal.getsignal(number) for number in EXIT_CODES}
        for number in EXIT_CODES:
            signal.signal(number, self._handle)
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, signal.SIG_DFL if handler is None else handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.request(signum)
            _say(f"\n{self.name}: stopping once the current step is done\n")


def _say(text: str) -> None:
    """Write to stderr's descriptor directly: a signal handler may run while `sys.stderr` is mid-write, and its
    buffered writer refuses a reentrant call."""
    try:
        os.write(sys.stderr.fileno(), text.encode())
    except (OSError, ValueError, AttributeError):  # closed, redirected to no file, or no stderr at all
        pass
