"""`python -m blur2seq`: the `blur2seq` command, without the console script on the PATH."""

from blur2seq.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
