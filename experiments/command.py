"""The command line every experiment shares: a bundle and evaluation pairs in, its table printed (and written as
Markdown and JSON with `--out`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from runtime.core.backends import BackendSettings
from runtime.core.bundle import Bundle, load_bundle
from runtime.core.deblurrer import Deblurrer
from runtime.core.refine import RefineSettings
from runtime.io.media import write_bytes, write_image
from runtime.tools.evaluate import add_pairs_arguments, limit_error
from runtime.tools.pairs import Pair, read_pairs

#: `run(bundle, pairs_dir, limit, threads, progress)`: the experiment's table, per pair.
Run = Callable[..., dict[str, Any]]


def experiment_main(
    argv: list[str] | None,
    name: str,
    description: str,
    run: Run,
    markdown: Callable[[Any], str],
    picture: Callable[[Path, Path], np.ndarray] | None = None,
) -> int:
    """Parse `--engine --pairs [--out] [--limit] [--threads]`, run the experiment `experiments.NAME` with progress
    on stderr, print its Markdown table, and write `NAME.md` and `NAME.json` into `--out`, and `NAME.png` when the
    experiment draws a `picture(bundle, pairs_dir)`."""
    parser = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=description)
    add_pairs_arguments(parser, f"{name}.md and .json")
    parser.add_argument("--threads", type=int, metavar="N", help="onnxruntime CPU threads")
    args = parser.parse_args(argv)
    if limit_error(args.limit):
        parser.error(str(limit_error(args.limit)))
    table = run(args.engine, args.pairs, args.limit, args.threads, progress=lambda text: print(text, file=sys.stderr))
    report = markdown(table)
    print(report, end="")
    if args.out is not None:
        out = Path(args.out)
        write_bytes(out / f"{name}.md", report.encode())
        write_bytes(out / f"{name}.json", (json.dumps(table, indent=2) + "\n").encode())
        if picture is not None:
            write_image(out / f"{name}.png", picture(Path(args.engine), Path(args.pairs)))
    return 0


def over_pairs(
    bundle: str | Path | Bundle,
    pairs_dir: str | Path,
    measure: Callable[[Deblurrer, Pair, int], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
    limit: int | None = None,
    threads: int | None = None,
    progress: Callable[[str], object] = print,
    refine: RefineSettings | None = None,
) -> dict[str, dict[str, Any]]:
    """`measure(deblurrer, pair, seed)` for each evaluation pair (seed: its place, from 1) with one onnxruntime CPU
    Deblurrer (refining with `refine` when given), `describe(figures)` told to `progress` after each; the figures
    per pair name."""
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    pairs = read_pairs(Path(pairs_dir), loaded.n_positions)[:limit]
    table: dict[str, dict[str, Any]] = {}
    cpu = BackendSettings("ort-cpu", threads=threads)
    with Deblurrer(loaded, cpu, refine=refine, log=lambda _: None) as deblurrer:
        for index, pair in enumerate(pairs, 1):
            table[pair.name] = measure(deblurrer, pair, index)
            progress(f"[{index}/{len(pairs)}] {pair.name}: {describe(table[pair.name])}")
    return table
