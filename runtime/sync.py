"""`python -m runtime.sync`: the command of `runtime.tools.sync`."""

from runtime.tools.sync import main

if __name__ == "__main__":
    raise SystemExit(main())
