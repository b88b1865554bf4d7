"""`export.pretrained` and `python -m export.onnx --pretrained` against a local HTTP server on 127.0.0.1.

The server serves checkpoints in the authors' format (plain state-dict pickles of reduced-width nets), honours
`Range: bytes=N-` and can drop a response part-way. Every test gets its own XDG_CACHE_HOME under tmp_path.
"""

from __future__ import annotations

import io
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from export import onnx as exporter
from export import pretrained
from export.pretrained import PUBLISHED, DownloadError, Published, cache_dir, download, fetch_pretrained
from runtime.core.bundle import load_bundle

ROLES = ("trajectory", "restoration")


@dataclass
class Site:
    """What the server serves and how it misbehaves, and the (path, Range header) of every request it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_once: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before closing, first request only
    drop_always: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before closing, every request
    redirects: dict[str, str] = field(default_factory=dict)
    ranges: bool = True
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    base: str = ""

    def url(self, path: str) -> str:
        return self.base + path


class Handler(BaseHTTPRequestHandler):
    """GET with `Range: bytes=N-` (206 + Content-Range), 404, 416, redirects and dropped connections."""

    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        site: Site = self.server.site  # type: ignore[attr-defined]
        site.requests.append((self.path, self.headers.get("Range")))
        if self.path in site.redirects:
            self.send_response(302)
            self.send_header("Location", site.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = site.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and site.ranges:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = site.drop_once.pop(self.path, site.drop_always.get(self.path))
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet: the tests read `Site.requests` instead."""


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """A private XDG_CACHE_HOME: nothing here ever writes to the real home cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "blur2seq-edge" / "checkpoints"


@pytest.fixture(scope="module")
def authors_files(small_nets) -> dict[str, bytes]:
    """The authors' format: a plain `torch.save` of each net's state dict, no metadata entry."""
    files = {}
    for role, net in zip(ROLES, small_nets, strict=True):
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        files[role] = buffer.getvalue()
    return files


@pytest.fixture
def site(authors_files) -> Iterator[Site]:
    """A ThreadingHTTPServer on 127.0.0.1 (free port) serving /trajectory.pkl and /restoration_G.pkl."""
    site = Site(
        files={"/trajectory.pkl": authors_files["trajectory"], "/restoration_G.pkl": authors_files["restoration"]}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.site = site  # type: ignore[attr-defined]
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def served(site: Site) -> dict[str, str]:
    return {"trajectory": site.url("/trajectory.pkl"), "restoration": site.url("/restoration_G.pkl")}


def one_line(error: pytest.ExceptionInfo[DownloadError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_pretrained_downloads_and_exports_a_bundle_that_loads(
    site, cache, authors_files, tmp_path, monkeypatch, capsys
):
    for role, url in served(site).items():
        monkeypatch.setitem(PUBLISHED, role, Published(url, PUBLISHED[role].file))
    out = tmp_path / "bundles" / "blur2seq"
    assert exporter.main(["--pretrained", "--out", str(out)]) == 0
    manifest = load_bundle(out).manifest
    assert {role: source["file"] for role, source in manifest["sources"].items()} == {
        role: PUBLISHED[role].file for role in ROLES
    }
    for role in ROLES:
        assert (cache / PUBLISHED[role].file).read_bytes() == authors_files[role]
    assert sorted(path.name for path in cache.iterdir()) == sorted(PUBLISHED[role].file for role in ROLES)
    progress = capsys.readouterr().err
    assert "trajectory: " in progress and "restoration: " in progress and "(100%)" in progress


def test_a_dropped_connection_resumes_with_a_range_request(site, cache, authors_files):
    cut = len(authors_files["trajectory"]) // 3
    site.drop_once["/trajectory.pkl"] = cut
    with pytest.raises(DownloadError) as error:
        fetch_pretrained(served(site), progress=False)
    assert f"after {cut} of {len(authors_files['trajectory'])} bytes" in one_line(error)
    part = cache / (PUBLISHED["trajectory"].file + ".part")
    assert part.stat().st_size == cut
    paths = fetch_pretrained(served(site), progress=False)
    assert ("/trajectory.pkl", f"bytes={cut}-") in site.requests
    assert paths["trajectory"].read_bytes() == authors_files["trajectory"]
    assert paths["restoration"].read_bytes() == authors_files["restoration"]
    assert not part.exists()


def test_a_server_ignoring_the_range_restarts_from_zero(site, authors_files, tmp_path):
    site.ranges = False
    target = tmp_path / "file.pkl"
    target.with_name("file.pkl.part").write_bytes(b"stale bytes of another file")
    download(site.url("/trajectory.pkl"), target, progress=False)
    assert site.requests == [("/trajectory.pkl", "bytes=27-")]
    assert target.read_bytes() == authors_files["trajectory"]
    assert not target.with_name("file.pkl.part").exists()


def test_a_truncated_file_is_one_line_and_no_final_file(site, cache, authors_files):
    size = len(authors_files["restoration"])
    site.drop_always["/restoration_G.pkl"] = size - 100
    with pytest.raises(DownloadError) as error:
        fetch_pretrained(served(site), progress=False)
    message = one_line(error)
    target = cache / PUBLISHED["restoration"].file
    assert message.startswith(f"cannot download {site.url('/restoration_G.pkl')}: ")
    assert f"after {size - 100} of {size} bytes" in message
    assert str(target) in message and "--trajectory" in message and "--restoration" in message
    assert not target.exists()
    assert target.with_name(target.name + ".part").stat().st_size == size - 100


def test_http_404_is_one_line_naming_the_url(site):
    urls = served(site) | {"trajectory": site.url("/gone.pkl")}
    with pytest.raises(DownloadError) as error:
        fetch_pretrained(urls, progress=False)
    message = one_line(error)
    assert message.startswith(f"cannot download {site.url('/gone.pkl')}: HTTP 404")


def test_an_unreachable_server_is_one_line_naming_the_url(cache):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/trajectory.pkl"
    with pytest.raises(DownloadError) as error:
        fetch_pretrained({"trajectory": url}, progress=False, timeout=5)
    message = one_line(error)
    assert message.startswith(f"cannot download {url}: ")
    assert str(cache / PUBLISHED["trajectory"].file) in message
    assert not cache.exists() or not any(cache.iterdir())


def test_a_cached_complete_file_is_not_fetched_again(site, cache):
    fetch_pretrained(served(site), progress=False)
    seen = len(site.requests)
    assert seen == 2
    fetch_pretrained(served(site), progress=False)
    assert len(site.requests) == seen
    # Files put there by hand are used as they are: no URL is even tried.
    assert fetch_pretrained({role: "http://127.0.0.1:9/unused" for role in ROLES}, progress=False) == {
        role: cache / PUBLISHED[role].file for role in ROLES
    }


def test_a_complete_part_file_is_finished_without_a_body(site, authors_files, tmp_path):
    """A `.part` already at full size (a run stopped before the rename): the server answers 416."""
    target = tmp_path / "file.pkl"
    target.with_name("file.pkl.part").write_bytes(authors_files["trajectory"])
    download(site.url("/trajectory.pkl"), target, progress=False)
    assert target.read_bytes() == authors_files["trajectory"]


def test_redirects_are_followed(site, authors_files, tmp_path):
    site.redirects["/moved.pkl"] = site.url("/trajectory.pkl")
    target = download(site.url("/moved.pkl"), tmp_path / "file.pkl", progress=False)
    assert target.read_bytes() == authors_files["trajectory"]


def test_progress_line_shows_bytes_total_and_percentage(site, authors_files, tmp_path):
    stream = io.StringIO()
    download(site.url("/trajectory.pkl"), tmp_path / "file.pkl", progress=stream)
    size_mb = len(authors_files["trajectory"]) / 1e6
    lines = stream.getvalue().splitlines()
    assert lines[0] == f"downloading {site.url('/trajectory.pkl')} to {tmp_path / 'file.pkl'}"
    assert lines[-1] == f"file.pkl: {size_mb:.1f} / {size_mb:.1f} MB (100%)"


def test_xdg_cache_home_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere" / "blur2seq-edge" / "checkpoints"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for unset in ("", "relative/path"):  # XDG: empty or relative means the default
        monkeypatch.setenv("XDG_CACHE_HOME", unset)
        assert cache_dir() == tmp_path / "home" / ".cache" / "blur2seq-edge" / "checkpoints"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "blur2seq-edge" / "checkpoints"


def test_download_lands_in_xdg_cache_home(site, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other-cache"))
    paths = fetch_pretrained(served(site), progress=False)
    assert all(path.parent == tmp_path / "other-cache" / "blur2seq-edge" / "checkpoints" for path in paths.values())


def test_main_reports_a_failed_download_as_one_error_line(site, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(PUBLISHED, "trajectory", Published(site.url("/gone.pkl"), PUBLISHED["trajectory"].file))
    assert exporter.main(["--pretrained", "--out", str(tmp_path / "b")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert errors == [errors[0]] and f"cannot download {site.url('/gone.pkl')}: HTTP 404" in errors[0]
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--pretrained", "--trajectory", "t.pkl"],
        ["--pretrained", "--restoration", "r.pkl"],
        ["--trajectory", "t.pkl"],
        [],
    ],
    ids=["with-trajectory", "with-restoration", "only-trajectory", "neither"],
)
def test_main_wants_pretrained_or_both_checkpoints(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        exporter.main([*argv, "--out", str(tmp_path / "b")])
    assert exit_.value.code == 2
    assert "--pretrained" in capsys.readouterr().err


def test_the_published_table_names_the_authors_files():
    assert set(PUBLISHED) == set(ROLES)
    for entry in PUBLISHED.values():
        assert entry.url.startswith("https://") and entry.url.endswith("/" + entry.file)
    assert PUBLISHED["restoration"].file.endswith("_G.pkl")
    assert pretrained.PUBLISHED["trajectory"].file == PUBLISHED["restoration"].file.removesuffix("_G.pkl") + ".pkl"
