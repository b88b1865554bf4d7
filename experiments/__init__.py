"""Measurement studies that are not product features: each module runs on the public API of `runtime`
(torch-free), prints its table and says which table of `docs/` it makes."""
