"""`python -m runtime.evaluate`: the command of `runtime.tools.evaluate`."""

from runtime.tools.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
