"""`python -m runtime.serve`: the command of `runtime.service.server` (a Triton server of a bundle, PyTriton)."""

from runtime.service.server import main

if __name__ == "__main__":
    raise SystemExit(main())
