"""One result folder per source in the output folder, written whole or not at all.

A source's results are written into a new hidden sibling of their folder (`OUTDIR/.NAME.XXXXXXXX.tmp`) and renamed
into place once complete, replacing a previous run's folder whole. So a source that fails or is interrupted leaves
nothing behind, and two runs into the same output folder never mix their files: the one that finishes second finds
the folder changed since it started, discards its own results and says so (the other's are kept whole).

Before any work, a folder is refused (one line naming it) when putting it in place would touch an input (at any
depth), go through a symbolic link or out of the output folder, or delete files this command does not write.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from runtime.io.media import MediaError

if sys.platform != "win32":
    import fcntl

#: The folder's identity when its work starts: device, inode and status-change time (None: absent). Any rename into
#: its place, or any file added or removed in it, changes it.
Identity = tuple[int, int, int] | None


def protected_paths(paths: Iterable[Path]) -> frozenset[Path]:
    """The places results must never touch for these input files: each one's resolved path (what a link points
    to) and, for a link, the link itself."""
    protected: set[Path] = set()
    for path in paths:
        protected.add(path.resolve())
        protected.add(path.absolute().parent.resolve() / path.name)
    return frozenset(protected)


class ResultFolder:
    """`OUTDIR/NAME` made whole: a context whose value is the temporary folder to write into, renamed into place
    when the block succeeds and removed when it fails.

    `inputs` are `protected_paths`; `ours` matches (in full) the relative paths, with `/`, of the files and folders
    this command writes, which a previous run's folder may hold and which are replaced with it. The checks run
    when the folder is made: MediaError when it is refused.
    """

    def __init__(self, outdir: Path, name: str, inputs: frozenset[Path], ours: re.Pattern[str]) -> None:
        self.outdir = outdir
        self.target = outdir / name
        self._before = _checked(outdir, self.target, inputs, ours)
        try:
            self.path = Path(tempfile.mkdtemp(dir=outdir, prefix=f".{name}.", suffix=".tmp"))
        except OSError as error:
            raise MediaError(f"{self.target}: cannot write here ({error.strerror or error})") from None

    def __enter__(self) -> Path:
        return self.path

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self._publish()
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def _publish(self) -> None:
        """Rename the finished folder into place, unless another run put one there since this one started."""
        aside = self.path.with_suffix(".old")  # the previous run's folder, removed once the new one is in place
        published = False
        try:
            os.chmod(self.path, 0o755)
            with _locked(self.outdir):
                if _identity(self.target) != self._before:
                    raise MediaError(
                        f"{self.target}: changed while this run worked on it (another run into the same -o?); "
                        "what is there is kept and this run's results discarded"
                    )
                if self._before is not None:
                    os.rename(self.target, aside)
                try:
                    os.rename(self.path, self.target)
                except OSError:
                    if self._before is not None:
                        os.rename(aside, self.target)
                    raise
                published = True
        except OSError as error:
            raise MediaError(f"{self.target}: cannot put the results in place ({error.strerror or error})") from None
        finally:
            shutil.rmtree(self.path, ignore_errors=True)
            if published:
                shutil.rmtree(aside, ignore_errors=True)


def _checked(outdir: Path, target: Path, inputs: frozenset[Path], ours: re.Pattern[str]) -> Identity:
    """Refuse a result folder whose replacement would touch an input, follow a link, leave the output folder or
    delete files this command does not write; its identity when it passes."""
    if target.is_symlink():
        raise MediaError(f"{target}: a symbolic link (to {os.readlink(target)}); results are not written through one")
    resolved = target.resolve()
    if resolved.parent != outdir.resolve():
        raise MediaError(f"{target}: lies outside the output folder {outdir}")
    touched = sorted(path for path in inputs if path == resolved or resolved in path.parents)
    if touched:
        raise MediaError(f"{target}: results would go where the input {touched[0]} lies; choose another -o")
    before = _identity(target)
    if before is not None and not target.is_dir():
        raise MediaError(f"{target}: exists and is not a folder; choose another -o")
    foreign = sorted(_foreign(target, ours)) if before is not None else []
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise MediaError(
            f"{target}: holds {foreign[0]}{more}, which this command does not write; move it or choose another -o"
        )
    return before


def _foreign(folder: Path, ours: re.Pattern[str]) -> Iterator[str]:
    """The relative paths under `folder` (links not followed) that `ours` does not match."""
    for root, folders, files in os.walk(folder):
        for entry in (*folders, *files):
            relative = (Path(root) / entry).relative_to(folder).as_posix()
            if not ours.fullmatch(relative):
                yield relative


def _identity(path: Path) -> Identity:
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino, status.st_ctime_ns


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (flock on the folder itself: no lock file is left), so that runs put
    their results in place one at a time; without flock (Windows) the identity check alone guards."""
    if sys.platform == "win32":
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
