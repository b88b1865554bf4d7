"""`python -m runtime.sensitivity`: the command of `runtime.tools.sensitivity`."""

from runtime.tools.sensitivity import main

if __name__ == "__main__":
    raise SystemExit(main())
