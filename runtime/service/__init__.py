"""Serving a bundle beyond one process: a Triton Inference Server (PyTriton) and its client.

protocol    the `deblur` model's inputs and outputs, their checks and conversions (pure numpy)
server      `python -m runtime.serve`: the model bound to PyTriton, one Deblurrer per instance
connection  a tritonclient connection over HTTP or gRPC, one client per thread
client      `python -m runtime.client`: inputs and results as `python -m runtime.deblur` has them
process     a server as a child process on free local ports (the benchmark's and the tests')
benchmark   `python -m runtime.service.benchmark`: served against in-process throughput and latency

PyTriton and tritonclient are the `serve` extra; only `server` and `connection` import them, when used.
"""
