"""A batch spread over a Ray cluster (`python -m runtime.deblur --ray ADDRESS|local`): one Deblurrer per worker.

Each worker is a Ray actor holding a `Deblurrer` built from the command's settings. The driver hands the sources out
one at a time, in order, to whichever worker is free, and the worker runs the plain batch's `run_source` on it: the
same processing, and the same result folder written whole, as without Ray. So every worker must see the bundle,
the inputs and the output folder at the paths the driver gives (a shared file system; they are made absolute), and
have this project installed. A video goes to one worker, which restores it frame after frame; cameras are not read
through Ray (the command refuses them). A source that fails is one line and the rest goes on; a worker that dies
fails the source it held and is not used again. Ctrl-C or SIGTERM stops handing sources out: those in flight are
finished, and the summary counts the others as skipped.

Ray is imported only when a cluster is used (`pip install -e ".[ray]"`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runtime.core.backends import BackendSettings
from runtime.core.backends.base import BackendError
from runtime.core.deblurrer import Deblurrer, RestoreSettings
from runtime.core.refine import RefineSettings
from runtime.io.batch import Options, Summary, already_done, one_line, run_source
from runtime.io.progress import Progress
from runtime.io.results import protected_paths
from runtime.io.sources import Source
from runtime.io.stopping import StopRequest

#: How to install what `--ray` needs.
INSTALL = 'pip install -e ".[ray]"'
#: How long the driver waits for a worker's result before it looks at the stop request again, in seconds.
POLL_S = 0.2


class ClusterError(Exception):
    """The run cannot start on the cluster (Ray missing, a worker that cannot load the bundle, too few CPUs); one
    line."""


def require_ray() -> None:
    """Raise ClusterError, saying how to install it, when Ray cannot be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ClusterError(f"--ray needs Ray, which is not installed here: {INSTALL}") from None


@dataclass(frozen=True)
class WorkerSettings:
    """What each worker builds its Deblurrer from (the bundle's folder and the backend, restoration and refinement
    settings) and processes with (the batch's options); `inputs` are the batch's `protected_paths`, which
    `run_on_cluster` fills in."""

    bundle: Path
    backend: BackendSettings
    restore: RestoreSettings
    refine: RefineSettings | None
    options: Options
    inputs: frozenset[Path] = frozenset()


@dataclass(frozen=True)
class Outcome:
    """One source processed by a worker: why it failed (None: done), what the processing printed (`--timings`)
    and what the worker's Deblurrer said meanwhile."""

    failure: str | None
    printed: str
    said: tuple[str, ...]


class Worker:
    """A Ray actor's state: one Deblurrer, used for one source at a time with the plain batch's `run_source`.

    A worker that cannot run (the bundle or the output folder not found on its machine, a backend that does not
    load there) says why through `ready`, in one line naming the machine, rather than dying.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        self._settings = settings
        self._said: list[str] = []
        self._deblurrer: Deblurrer | None = None
        self._error: str | None = None
        try:
            if not settings.options.outdir.is_dir():
                raise FileNotFoundError(
                    f"the output folder {settings.options.outdir} is not there (the workers need it, the bundle "
                    "and the inputs on a shared file system)"
                )
            self._deblurrer = Deblurrer(
                settings.bundle, settings.backend, settings.restore, settings.refine, log=self._said.append
            )
        except (BackendError, ValueError, OSError) as error:
            self._error = f"a Ray worker on {socket.gethostname()} cannot run: {error}"

    def ready(self) -> tuple[str | None, tuple[str, ...]]:
        """Why this worker cannot run (None: it can), and what its Deblurrer said as it loaded."""
        return self._error, self._drain()

    def process(self, source: Source) -> Outcome:
        """`run_source` on one source; what it prints is returned rather than lost in the worker's output."""
        assert self._deblurrer is not None, "process called on a worker that cannot run"
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            failure = run_source(
                self._deblurrer, source, self._settings.options, self._settings.inputs, _quiet, StopRequest()
            )
        return Outcome(failure, printed.getvalue(), self._drain())

    def _drain(self) -> tuple[str, ...]:
        said, self._said[:] = tuple(self._said), []
        return said


def run_on_cluster(
    address: str,
    workers: int | None,
    settings: WorkerSettings,
    sources: list[Source],
    n_positions: int,
    stop: StopRequest,
    log: Callable[[str], object],
    progress: Callable[[str], None] | None = None,
) -> Summary:
    """Process `sources` on `workers` Ray workers (None: as many as the cluster's CPUs allow at the backend's
    threads each, and no more than there are sources), each reserving that many CPUs: on a new cluster on this
    machine for `local`, else on the one at `address`. `n_positions` is the bundle's; `log` gets the workers'
    Deblurrer messages. With `skip_done`, sources whose results are complete are left without starting any worker.
    ClusterError when the run cannot start."""
    summary = Summary()
    options = settings.options
    todo: list[tuple[int, Source]] = []
    for number, source in enumerate(sources, 1):
        if options.skip_done and already_done(source, options, n_positions):
            summary.already_done.append(source.name)
        else:
            todo.append((number, source))
    if not todo or stop.requested:
        summary.skipped = [source.name for _, source in todo]
        summary.interrupted = stop.name
        return summary
    threads = settings.backend.threads or 1
    cpus = max(os.cpu_count() or 1, (workers or 1) * threads)  # for `local`: enough for the workers asked for
    absolute = replace(
        settings,
        bundle=settings.bundle.absolute(),
        options=replace(options, outdir=options.outdir.absolute()),
        inputs=protected_paths(source.location for source in sources if isinstance(source.location, Path)),
    )
    with _connected(address, cpus) as ray:
        available = int(ray.cluster_resources().get("CPU", 0))
        count = workers or max(1, available // threads)
        if count * threads > available:
            raise ClusterError(
                f"--workers {count} with --threads {threads} need {count * threads} CPUs; the Ray cluster at "
                f"{address} has {available}"
            )
        actor = ray.remote(Worker).options(num_cpus=threads)
        handles = [] if stop.requested else [actor.remote(absolute) for _ in range(min(count, len(todo)))]
        _await_ready(ray, handles, log)
        _dispatch(
            ray, handles, todo, len(sources), absolute.options.outdir, options.outdir, stop, log, progress, summary
        )
    return summary


@contextlib.contextmanager
def _connected(address: str, cpus: int) -> Iterator[Any]:
    """The `ray` module, connected for the block: `local` starts a cluster of `cpus` CPUs on this machine and stops
    it after; otherwise the driver joins the cluster at `address` and leaves it after."""
    import ray

    keep_handler = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if keep_handler else None
    try:
        try:
            if address == "local":
                ray.init(
                    address="local",
                    num_cpus=cpus,
                    include_dashboard=False,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                )
            else:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ClusterError(f"cannot use the Ray cluster at {address}: {one_line(str(error))}") from None
        if keep_handler:  # ray.init replaces it with one that exits at once; the batch stops at a safe point
            signal.signal(signal.SIGTERM, signal.SIG_DFL if handler is None else handler)
        yield ray
    finally:
        ray.shutdown()


def _await_ready(ray: Any, handles: list[Any], log: Callable[[str], object]) -> None:
    """Wait until every worker has loaded its Deblurrer; the first that cannot run is a ClusterError. What they
    said as they loaded goes to `log`, each distinct line once."""
    said: dict[str, None] = {}
    try:
        answers = ray.get([handle.ready.remote() for handle in handles])
    except ray.exceptions.RayError as error:
        raise ClusterError(f"a Ray worker did not start: {one_line(str(error))}") from None
    for problem, lines in answers:
        if problem is not None:
            raise ClusterError(problem)
        said.update(dict.fromkeys(lines))
    for line in said:
        log(line)


def _dispatch(
    ray: Any,
    handles: list[Any],
    todo: list[tuple[int, Source]],
    total: int,
    outdir: Path,
    given_outdir: Path,
    stop: StopRequest,
    log: Callable[[str], object],
    progress: Callable[[str], None] | None,
    summary: Summary,
) -> None:
    """Hand the sources (numbered in the batch) to free workers until all are processed or a stop is requested,
    then wait for those in flight; record each in `summary`, in the batch's order."""
    progress = progress or Progress()
    idle = list(reversed(handles))
    queue = deque(todo)
    running: dict[Any, tuple[Any, int, Source]] = {}
    outcomes: dict[int, str | None] = {}  # by number: None when done, else why it failed
    started = time.perf_counter()
    while queue or running:
        while queue and idle and not stop.requested:
            handle = idle.pop()
            number, source = queue.popleft()
            progress(f"[{number}/{total}] {source.name}")
            running[handle.process.remote(_absolute(source))] = (handle, number, source)
        if not running:
            break  # stopped, or no worker left
        try:
            finished, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
        except KeyboardInterrupt:  # no handler recorded the Ctrl-C
            stop.request(signal.SIGINT)
            continue
        for reference in finished:
            handle, number, source = running.pop(reference)
            try:
                outcome = ray.get(reference)
            except ray.exceptions.RayActorError as error:  # the worker died: it gets no more sources
                outcomes[number] = f"the Ray worker processing it died ({one_line(str(error))})"
                continue
            except ray.exceptions.RayTaskError as error:
                outcomes[number] = one_line(f"{type(error.cause).__name__}: {error.cause}")
            else:
                for line in outcome.said:
                    log(line)
                print(outcome.printed, end="")
                failure = outcome.failure
                outcomes[number] = None if failure is None else _as_given(failure, source, outdir, given_outdir)
            idle.append(handle)
    for number, source in todo:
        if number in outcomes:
            failure = outcomes[number]
            if failure is None:
                summary.done.append(source.name)
            else:
                summary.failed.append((str(source.location), failure))
        elif stop.requested:
            summary.skipped.append(source.name)
        else:
            summary.failed.append((str(source.location), "not processed: every Ray worker died"))
    summary.interrupted = stop.name
    summary.seconds = time.perf_counter() - started
    if isinstance(progress, Progress):
        progress.done()


def _absolute(source: Source) -> Source:
    """The source as a worker on any machine reads it: its path made absolute."""
    return replace(source, location=source.location.absolute()) if isinstance(source.location, Path) else source


def _as_given(text: str, source: Source, outdir: Path, given_outdir: Path) -> str:
    """A worker's reason with the absolute paths it was given written back as the command's arguments gave them,
    so the line reads as the plain run's."""
    if isinstance(source.location, Path):
        text = text.replace(str(source.location.absolute()), str(source.location))
    return text.replace(str(outdir), str(given_outdir))


def _quiet(_: str) -> None:
    """A worker's progress: not shown (the driver shows which source each worker has taken)."""
