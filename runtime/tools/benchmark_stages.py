"""The stages `python -m runtime.benchmark` times, in report order with their labels, and the refinement it runs."""

from __future__ import annotations

from runtime.core.refine import RefineSettings

GRAPHS = ("trajectory", "restoration", "sequence")
#: Timed when the bundle has it (older bundles do not).
REFINE_GRAPH = "refine"
#: The refinement the benchmark times: what `--refine` does by default.
REFINE_SETTINGS = RefineSettings()
#: Every stage reported, in table order, with its label.
STAGES = {
    "trajectory": "trajectory graph",
    "restoration": "restoration graph",
    "sequence": "sequence graph",
    "refine": "refine graph (one run)",
    "refinement": f"refinement ({REFINE_SETTINGS.steps} steps at scales {REFINE_SETTINGS.scales})",
    "warp_gridsample": "one blur operator alone: GridSample + mean (onnxruntime CPU)",
    "warp_deformconv": "one blur operator alone: DeformConv (onnxruntime CPU)",
    "warp_torch": "one blur operator alone: PyTorch grid_sample + mean (with --torch-reference)",
    "io": "I/O (PNG decode + encode)",
    "end_to_end": "end to end (Deblurrer call + sequence)",
}
