"""The `blur2seq` command: one table of subcommands, each handing its arguments to a module's `main`."""

from __future__ import annotations

import functools
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from blur2seq import cli
from tests import conftest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "runtime" / "bundles" / "demo"


#: `blur2seq` in this process: (exit code, stdout, stderr).
run = functools.partial(conftest.run, cli.main)


def test_the_help_lists_every_subcommand_with_its_summary():
    code, out, err = run("--help")
    assert (code, err) == (0, "")
    for command in cli.SUBCOMMANDS:
        assert any(line.split(None, 1) == [command.name, command.summary] for line in out.splitlines())
    assert len({command.name for command in cli.SUBCOMMANDS}) == len(cli.SUBCOMMANDS)


@pytest.mark.parametrize("command", cli.SUBCOMMANDS, ids=lambda command: command.name)
def test_each_subcommand_runs_a_module_main(command):
    assert callable(importlib.import_module(command.module).main)


def test_a_subcommand_shows_its_modules_own_help():
    code, out, _ = run("deblur", "--help")
    assert code == 0 and out.startswith("usage: python -m runtime.deblur ") and "--engine" in out


def test_the_installed_script_runs_deblur_without_torch():
    script = shutil.which("blur2seq")
    if script is None:
        pytest.skip("the blur2seq script is not installed (pip install -e .)")
    done = subprocess.run([script, "deblur", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m runtime.deblur ")
    code = "import sys\nfrom blur2seq.cli import main\nmain(['deblur', '--help'])\nprint('torch' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "False", done.stderr


def test_no_subcommand_prints_the_help_and_an_unknown_one_a_line():
    code, out, err = run()
    assert (code, out) == (2, "") and err == cli.help_text()
    code, out, err = run("deblr", "photo.jpg")
    assert (code, out) == (2, "") and len(err.splitlines()) == 1 and "'deblr'" in err and "deblur" in err


def test_dispatch_passes_the_arguments_and_returns_the_exit_code():
    code, out, _ = run("lint", DEMO / "trajectory.onnx")
    assert code == 0 and out == f"{DEMO / 'trajectory.onnx'}: ok (TensorRT 8.5)\n"
    code, _, err = run("lint", DEMO / "trajectory.onnx", "--trt-version", "7")
    assert code == 2 and err.startswith("python -m export.lint: error:")
    code, _, err = run("deblur", "photo.jpg")  # argparse's exit on a usage error is returned, not raised
    assert code == 2 and "python -m runtime.deblur: error:" in err


def test_a_subcommand_of_the_export_extra_without_torch_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "models.checkpoint", raising=False)
    code, out, err = run("checkpoint", "--help")
    assert (code, out) == (2, "")
    assert err == f"blur2seq checkpoint: needs torch (the export extra): {cli.INSTALL_EXPORT}\n"
    assert 'pip install torch==2.13.0, then pip install -e ".[export]"' in err
