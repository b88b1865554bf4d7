"""Deblur a video stream (a camera index or a video file) with the `Deblurrer` API and write the result.

    python examples/deblur_stream.py --engine runtime/bundles/demo 0 restored.mp4 --frames 100

One Deblurrer per thread: it reuses its buffers from frame to frame. Needs the project installed
(`pip install -e .`); no PyTorch.
"""

from __future__ import annotations

import argparse
import sys

import cv2

from runtime import BackendSettings, Deblurrer
from runtime.core.backends.base import BackendError
from runtime.core.bundle import BundleError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="camera index (e.g. 0) or video file")
    parser.add_argument("output", help="MP4 file to write")
    parser.add_argument("--engine", required=True, help="bundle directory")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--frames", type=int, default=0, help="stop after this many frames (0: until the end)")
    args = parser.parse_args()

    capture = cv2.VideoCapture(int(args.source) if args.source.isdigit() else args.source)
    if not capture.isOpened():
        print(f"error: {args.source}: cannot open", file=sys.stderr)
        return 2
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    writer = None
    count = 0
    try:
        backend = BackendSettings(args.backend)
        with Deblurrer(args.engine, backend, log=lambda text: print(text, file=sys.stderr)) as deblurrer:
            while args.frames == 0 or count < args.frames:
                ok, frame = capture.read()
                if not ok:
                    break
                result = deblurrer(frame)
                if writer is None:
                    height, width = result.restored.shape[:2]
                    writer = cv2.VideoWriter(args.output, cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
                    if not writer.isOpened():
                        print(f"error: {args.output}: cannot write an MP4 video there", file=sys.stderr)
                        return 2
                writer.write(result.restored)
                count += 1
                stages = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in result.timings.items())
                print(f"frame {count}: {stages}", file=sys.stderr)
    except (BundleError, BackendError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    print(f"{count} frames -> {args.output}", file=sys.stderr)
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main())
