"""`python -m runtime.serve` as a child process on free local ports: started, waited for until its model is ready,
and stopped with SIGTERM. For the benchmark and the tests, which need a real server beside them."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.service import protocol

#: Seconds a server may take to start: Triton, the Python backend and one Deblurrer per instance.
STARTUP_TIMEOUT_S = 120.0
#: Seconds a server may take to stop after SIGTERM (Triton waits for the requests in flight, then unloads).
STOP_TIMEOUT_S = 30.0
HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A server that did not start or stop; one line with the end of its log."""


@dataclass
class ServerProcess:
    """A running `python -m runtime.serve` on HOST, and the file its output goes to."""

    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int
    log: Path

    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    def ready(self) -> bool:
        """Whether the model answers ready on the HTTP port."""
        url = f"http://{self.http_url}/v2/models/{protocol.MODEL_NAME}/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the server's output, joined on one line."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        kept = [line.strip() for line in text.splitlines() if line.strip()]
        return " | ".join(kept[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then the exit code; ServerError (after killing it) when it has not ended within `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise ServerError(f"the server did not stop within {timeout:g} s after SIGTERM") from None


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on HOST now (the system's choice; another process may take one later)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for each in sockets:
            each.bind((HOST, 0))
        return [each.getsockname()[1] for each in sockets]


def start_server(
    engine: Path,
    arguments: Sequence[str],
    log: Path,
    python: str = sys.executable,
    timeout: float = STARTUP_TIMEOUT_S,
) -> ServerProcess:
    """Start a server of `engine` with further `arguments` (e.g. `--backend ort-cpu`), its output into `log`, and
    wait until its model is ready; ServerError, with the end of its log, when it does not get there."""
    http_port, grpc_port, metrics_port = free_ports(3)
    command = [
        python, "-m", "runtime.serve", "--engine", str(Path(engine).resolve()), "--host", HOST,
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
        *arguments,
    ]  # fmt: skip
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])
    server = ServerProcess(process, http_port, grpc_port, metrics_port, Path(log))
    deadline = time.monotonic() + timeout
    while not server.ready():
        if process.poll() is not None:
            raise ServerError(f"the server exited with code {process.returncode}: {server.log_tail()}")
        if time.monotonic() > deadline:
            with contextlib.suppress(ServerError):
                server.stop()
            raise ServerError(f"the server was not ready within {timeout:g} s: {server.log_tail()}")
        time.sleep(0.2)
    return server


@contextlib.contextmanager
def running_server(engine: Path, arguments: Sequence[str], log: Path) -> Iterator[ServerProcess]:
    """A started server for the block, stopped after it whatever happens."""
    server = start_server(engine, arguments, log)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()
