"""`python -m runtime.deblur`: the command of `runtime.io.deblur`."""

from runtime.io.deblur import main

if __name__ == "__main__":
    raise SystemExit(main())
