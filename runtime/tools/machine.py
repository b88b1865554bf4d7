"""The machine a measurement ran on: CPUs, their model, the OS and library versions, and how busy it was."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: CPUs, their model, the OS and library versions, and how busy the machine was."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "load_average": load_average(),
    }


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages: above the CPU count, other work competed for the cores."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
