"""Fetch the Blur2Seq authors' published checkpoints into a user cache, so one command can export their model.

    python -m export.onnx --pretrained --out BUNDLE   # downloads once, then exports like --trajectory/--restoration

The cache is `$XDG_CACHE_HOME/blur2seq-edge/checkpoints` (default `~/.cache/blur2seq-edge/checkpoints`). A file
downloads to `NAME.part` and is renamed to `NAME` only once it has every byte the server announced, so a file under
its final name is complete and is never fetched again. A failed download keeps the `.part`; the next run resumes it
with an HTTP Range request (a server that ignores the range and answers 200 makes it restart from zero). Any failure
is one `DownloadError` line: the URL, why, and where to put the file by hand. Standard library only.
"""

from __future__ import annotations

import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, TextIO


class Published(NamedTuple):
    """One published checkpoint: where the authors serve it and the name it keeps in the cache."""

    url: str
    file: str


_SERVER = "https://iie.fing.edu.uy/~carbajal/Blur2Seq/"
_STEM = (
    "camera_shake_epoch25_epoch35_epoch50_epoch10_epoch5_epoch25_epoch25_epoch25"
    "_epoch27_epoch24_epoch4_epoch10_epoch22_epoch23_epoch90"
)
# The checkpoints linked from the README of github.com/GuillermoCarbajal/Blur2Seq. The authors state no sizes or
# hashes: the size check is against the server's Content-Length.
PUBLISHED: dict[str, Published] = {
    "trajectory": Published(f"{_SERVER}{_STEM}.pkl", f"{_STEM}.pkl"),
    "restoration": Published(f"{_SERVER}{_STEM}_G.pkl", f"{_STEM}_G.pkl"),
}

CHUNK = 1 << 20
TIMEOUT_S = 60.0
_USER_AGENT = "blur2seq-edge (python urllib)"


class DownloadError(RuntimeError):
    """A checkpoint that could not be fetched; the message is one line: URL, reason, where to put it by hand."""


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/blur2seq-edge/checkpoints`; a relative or empty XDG_CACHE_HOME is ignored, as XDG says."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "blur2seq-edge" / "checkpoints"


def fetch_pretrained(
    urls: Mapping[str, str] | None = None,
    *,
    cache: Path | None = None,
    progress: bool | TextIO = True,
    timeout: float = TIMEOUT_S,
) -> dict[str, Path]:
    """The cached path of each published checkpoint (role -> path), downloading the ones not yet complete.

    `urls` replaces the published URL of some roles (a mirror, or a local server in tests); the cached file keeps
    the published name, so a file put there by hand is found whatever the URL. Progress lines go to stderr,
    to the stream `progress`, or nowhere (False). Raises `DownloadError`.
    """
    cache = cache or cache_dir()
    overrides = dict(urls or {})
    unknown = sorted(set(overrides) - set(PUBLISHED))
    if unknown:
        raise ValueError(f"no published checkpoint for {', '.join(unknown)}: roles are {', '.join(PUBLISHED)}")
    return {
        role: download(
            overrides.get(role, entry.url), cache / entry.file, progress=progress, timeout=timeout, label=role
        )
        for role, entry in PUBLISHED.items()
    }


def download(
    url: str,
    target: Path,
    *,
    progress: bool | TextIO = True,
    timeout: float = TIMEOUT_S,
    label: str | None = None,
) -> Path:
    """Fetch `url` to `target` unless `target` already exists, resuming `target.part`; returns `target`.

    Progress lines (prefixed `label`, default the file name) go as in `fetch_pretrained`. Redirects are followed
    (urllib keeps the Range header across them). Raises `DownloadError`.
    """
    if target.is_file():
        return target
    stream = (sys.stderr if progress else None) if isinstance(progress, bool) else progress
    part = target.with_name(target.name + ".part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if stream is not None:
            print(f"downloading {url} to {target}", file=stream, flush=True)
        _fetch(url, part, _Progress(stream, label or target.name), timeout)
        os.replace(part, target)
    except urllib.error.HTTPError as error:
        reason = f"HTTP {error.code} {error.reason}"
    except urllib.error.URLError as error:
        reason = _reason(error.reason)
    except (OSError, http.client.HTTPException, ValueError) as error:
        reason = _reason(error)
    else:
        return target
    kept = part.stat().st_size if part.is_file() else 0
    if kept:
        reason += f" (kept {kept} bytes in {part.name}: run again to resume)"
    raise DownloadError(
        f"cannot download {url}: {_reason(reason)}; fetch it by hand to {target}, "
        "or pass --trajectory FILE --restoration FILE instead"
    )


def _fetch(url: str, part: Path, meter: _Progress, timeout: float) -> None:
    """Download into `part`, appending to what it already holds when the server honours the range."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise
        # Nothing left past `offset`: the `.part` is complete if the server's size says so, stale otherwise.
        complete = _total_from_content_range(error.headers.get("Content-Range")) == offset
        error.close()
        if complete:
            return
        part.unlink()
        return _fetch(url, part, meter, timeout)
    with response:
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                raise ValueError(f"server resumed at byte {start}, asked for {offset}")
            mode = "ab"
        else:  # 200: the whole file, whatever the range asked
            offset, total, mode = 0, _content_length(response), "wb"
        meter.start(total, offset)
        received = offset
        try:
            with open(part, mode) as file:
                while chunk := response.read(CHUNK):
                    file.write(chunk)
                    received += len(chunk)
                    meter.update(received)
                file.flush()
                os.fsync(file.fileno())
        finally:
            meter.finish(received)  # also on failure: a terminal line ends before the error is printed
    if total is not None and received < total:
        raise ConnectionError(f"connection closed after {received} of {total} bytes")
    if total is not None and received > total:
        part.unlink()
        raise ValueError(f"received {received} bytes, more than the {total} the server announced")


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _content_range(value: str | None) -> tuple[int, int | None]:
    """(first byte, total size or None) of a 206's `Content-Range: bytes FIRST-LAST/TOTAL`."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value or "")
    if not match:
        raise ValueError(f"partial response with an unreadable Content-Range {value!r}")
    return int(match.group(1)), None if match.group(2) == "*" else int(match.group(2))


def _total_from_content_range(value: str | None) -> int | None:
    """The total of a 416's `Content-Range: bytes */TOTAL`, or None."""
    match = re.fullmatch(r"\s*bytes\s+\*/(\d+)\s*", value or "")
    return int(match.group(1)) if match else None


def _reason(error: object) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


class _Progress:
    """A throttled `NAME: 12.3 / 45.6 MB (27%)` line: rewritten in place on a terminal, one line per interval
    in a log."""

    def __init__(self, stream: TextIO | None, name: str) -> None:
        self.stream, self.name = stream, name
        self.total: int | None = None
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.interval = 0.25 if self.tty else 5.0
        self.last = time.monotonic()

    def start(self, total: int | None, done: int) -> None:
        self.total, self.last = total, time.monotonic()
        self._show(done, final=False)

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._show(done, final=False)

    def finish(self, done: int) -> None:
        self._show(done, final=True)

    def _show(self, done: int, *, final: bool) -> None:
        if self.stream is None:
            return
        if self.total:
            line = f"{self.name}: {done / 1e6:.1f} / {self.total / 1e6:.1f} MB ({100 * done / self.total:.0f}%)"
        else:
            line = f"{self.name}: {done / 1e6:.1f} MB"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
