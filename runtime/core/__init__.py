"""The inference core: bundles, backends, the `Deblurrer`, tiling, refinement, camera and motion (no I/O)."""
