"""Make the installed `tensorrt-stubs` usable by mypy; prints the folder to put on MYPYPATH.

The package installs `tensorrt/__init__.pyi` into site-packages without a `py.typed` marker (so mypy treats
TensorRT as untyped and checks nothing), and its stubs have a few lines that are not valid Python (a parameter
named `in`, a non-default parameter after defaults). We write a corrected copy into a folder of our own.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

FIXES = (
    (re.compile(r"\bin: list\["), "in_: list["),
    (re.compile(r"power: Weights = None, channel_axis: int\)"), "power: Weights = None, channel_axis: int = 0)"),
)


def main() -> int:
    site = Path(sysconfig.get_paths()["purelib"])
    target = Path(sys.argv[1])
    for package in ("tensorrt", "tensorrt_bindings"):
        for stub in sorted((site / package).glob("*.pyi")):
            text = stub.read_text()
            for pattern, replacement in FIXES:
                text = pattern.sub(replacement, text)
            compile(text, str(stub), "exec")  # fail here, loudly, if the stubs changed shape
            out = target / package / stub.name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
