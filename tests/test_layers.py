"""The layers of the project (`pyproject.toml`'s import-linter contracts): data flows models -> export ->
calibration -> runtime, the runtime never imports torch, and no module imports another in a circle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("blur2seq", "experiments", "calibration", "export", "models", "runtime")
HIDDEN_IMPORTS = """

def _hidden():
    import torch

    from runtime.io import media

    return torch, media
"""
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, capture_output=True, text=True, timeout=120)


def test_every_contract_is_kept():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_an_import_inside_a_function_counts(tmp_path):
    """A copy of the project whose core imports torch and the I/O layer inside a function breaks three contracts."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.onnx", "*.pt"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "runtime" / "core" / "camera.py").open("a") as file:
        file.write(
            "\n\ndef _hidden():\n    import torch\n\n    from runtime.io import media\n\n    return torch, media\n"
        )
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    broken = [line for line in done.stdout.splitlines() if line.rstrip().endswith("BROKEN")]
    assert len(broken) == 3, done.stdout
