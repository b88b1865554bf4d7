"""Measurements behind the README's findings that are not product features: each module runs on the public API of
`runtime` (torch-free), prints its table and says which README table it makes."""
