"""INT8 calibration and reduced-precision conversion with measured accuracy."""
