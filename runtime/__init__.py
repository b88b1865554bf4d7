"""Torch-free execution of a bundle: backends, the Deblurrer API and the command-line tools.

The API a capture app uses (a frame is OpenCV's HxWx3 uint8 BGR; `Deblurrer.restore` takes float32 RGB):

    from runtime import BackendSettings, Deblurrer, RefineSettings, RestoreSettings, load_bundle

    bundle = load_bundle("runtime/bundles/demo")
    backend = BackendSettings("auto", precision="fp32")
    with Deblurrer(bundle, backend, RestoreSettings(tile_side=1024), RefineSettings(steps=30)) as deblurrer:
        result = deblurrer(frame)  # result.restored: the frame deblurred, uint8 BGR; result.timings: seconds
        trajectory = result.trajectory  # (P, 3) radians (pitch, yaw, roll): the camera shake

The command lines are `python -m runtime.deblur` (with `--ray` on a Ray cluster), `runtime.evaluate`,
`runtime.benchmark`, `runtime.sensitivity`, `runtime.sync`, and for serving `runtime.serve`, `runtime.client` and
`runtime.service.benchmark` (docs/serving.md).
"""

from runtime.core.backends import BackendSettings
from runtime.core.bundle import Bundle, load_bundle
from runtime.core.deblurrer import Deblurrer, DeblurResult, RestoreSettings
from runtime.core.motion import RowMotion, Trajectory
from runtime.core.refine import RefineResult, RefineSettings

__all__ = [
    "BackendSettings",
    "Bundle",
    "DeblurResult",
    "Deblurrer",
    "RefineResult",
    "RefineSettings",
    "RestoreSettings",
    "RowMotion",
    "Trajectory",
    "load_bundle",
]
