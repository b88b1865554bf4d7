"""`python -m runtime.client`: the command of `runtime.service.client` (deblur files with a served bundle)."""

from runtime.service.client import main

if __name__ == "__main__":
    raise SystemExit(main())
