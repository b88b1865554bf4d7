"""`python -m runtime.benchmark`: the command of `runtime.tools.benchmark`."""

from runtime.tools.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
