"""`python -m export.tensorrt BUNDLE --profile configs/build/NAME.yaml [--precision P] [--roles ...]`.

Builds TensorRT engines into a bundle. The builder runs on the device beside its runner
(`runtime.core.backends.tensorrt_build`); this is its command under the name the export steps use.
"""

from runtime.core.backends.tensorrt_build import main

if __name__ == "__main__":
    raise SystemExit(main())
