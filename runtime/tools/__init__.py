"""Measurement tools over bundles: evaluation, benchmark, comparison, sensitivity, gyroscope sync, charts."""
