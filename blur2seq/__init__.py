"""The `blur2seq` command."""
