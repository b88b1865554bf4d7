"""The progress display: one line per step into a log or pipe, one line rewritten in place on a terminal."""

import io

from runtime.io.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_a_line_per_step_and_a_terminal_one_line_rewritten():
    pipe, terminal = io.StringIO(), Terminal()
    for stream in (pipe, terminal):
        progress = Progress(stream)
        progress("frame 1/2")
        progress("frame 2/2")
        progress.done()
    assert pipe.getvalue() == "frame 1/2\nframe 2/2\n"
    assert terminal.getvalue() == "\r\033[Kframe 1/2\r\033[Kframe 2/2\n"
