"""File and camera I/O and the `runtime.deblur` command line: images, videos, lenses, presets, batches, pictures."""
