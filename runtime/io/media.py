"""Reading and writing images and videos, with clear refusals and atomic writes.

Images come in as float32 RGB in [0, 1] plus what is needed to write results back the same way: the bit depth
(8 or 16), whether the file was gray, and its alpha channel (kept as it was). An image larger than
`runtime.core.limits.IMAGE_PIXELS` is refused from its header, before it is decoded, and a JPEG that ends before its
end-of-image marker is refused as truncated (OpenCV would decode it with its lower part grey). Every write goes to a
temporary file in the target folder and is renamed into place, so an interrupted run never leaves a half-written
file, nor a temporary one when the rename fails.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from runtime.core.camera import focal_length_from_35mm
from runtime.core.limits import IMAGE_PIXELS, LimitError
from runtime.core.pixels import quantize

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm"})
EXIF_ORIENTATION = 0x0112
#: The EXIF sub-IFD and its tags that give a photo's focal length.
EXIF_IFD = 0x8769
EXIF_FOCAL_LENGTH = 0x920A  # mm
EXIF_FOCAL_PLANE_X_RESOLUTION = 0xA20E  # sensor pixels per unit across the image width
EXIF_FOCAL_PLANE_UNIT = 0xA210  # 2 inch (the default), 3 cm; DNG adds 4 mm and 5 um
EXIF_PIXEL_X_DIMENSION = 0xA002  # the image width the focal-plane resolution refers to
EXIF_FOCAL_LENGTH_35MM = 0xA405  # mm, 0 when unknown
_FOCAL_PLANE_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}


class MediaError(ValueError):
    """An input that cannot be read or an output that cannot be written; one line naming the file."""


@dataclass(frozen=True)
class ExifFocalLength:
    """A photo's focal length from its EXIF, in pixels of the image as read, and the tags it came from."""

    pixels: float
    source: str


@dataclass(frozen=True)
class Picture:
    """An image as the nets want it (HxWx3 float32 RGB in [0, 1]) and how to write results like it."""

    rgb: np.ndarray
    bit_depth: int
    gray: bool
    alpha: np.ndarray | None
    #: The focal length the file's EXIF gives, if any, in pixels of the image as read (before any resizing).
    exif_focal_length: ExifFocalLength | None = None


def exif_focal_length(tags: Mapping[int, Any], stored_width: int, height: int, width: int) -> ExifFocalLength | None:
    """The focal length in pixels from a photo's EXIF sub-IFD `tags`: FocalLength times the focal-plane resolution
    when the camera records both (exact; rescaled when the image is not the width the resolution refers to), else
    the 35 mm-equivalent focal length over the image's diagonal; None when neither is usable.

    `stored_width` is the image's width as stored (before the EXIF orientation), `height` and `width` upright.
    """
    focal_mm = _positive(tags.get(EXIF_FOCAL_LENGTH))
    resolution = _positive(tags.get(EXIF_FOCAL_PLANE_X_RESOLUTION))
    unit = _positive(tags.get(EXIF_FOCAL_PLANE_UNIT, 2))
    unit_mm = _FOCAL_PLANE_UNIT_MM.get(int(unit)) if unit is not None else None
    if focal_mm is not None and resolution is not None and unit_mm is not None:
        referred_width = _positive(tags.get(EXIF_PIXEL_X_DIMENSION)) or stored_width
        pixels = focal_mm * resolution / unit_mm * stored_width / referred_width
        return ExifFocalLength(pixels, f"FocalLength {focal_mm:g} mm at {resolution / unit_mm:g} px/mm on the sensor")
    focal_35mm = _positive(tags.get(EXIF_FOCAL_LENGTH_35MM))
    if focal_35mm is not None:
        return ExifFocalLength(
            focal_length_from_35mm(focal_35mm, height, width), f"{focal_35mm:g} mm (35 mm equivalent)"
        )
    return None


def _positive(value: Any) -> float | None:
    """A tag's value as a positive finite number, else None (absent, zero, or not a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number > 0 else None


#: EXIF orientation -> how to turn the stored pixels upright (as viewers show them), per the EXIF standard.
_ORIENTATIONS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda data: data[:, ::-1],
    3: lambda data: data[::-1, ::-1],
    4: lambda data: data[::-1],
    5: lambda data: data.swapaxes(0, 1),
    6: lambda data: np.rot90(data, -1),
    7: lambda data: np.rot90(data, 2).swapaxes(0, 1),
    8: lambda data: np.rot90(data, 1),
}


def read_image(path: Path) -> Picture:
    """Read an 8/16-bit gray, RGB or RGBA image, upright; refuse anything else with a one-line reason.

    The header (size, EXIF) is checked before the pixels are decoded, so an oversized image costs no memory (the
    decoded size is checked too, for formats Pillow does not read), and a truncated JPEG is refused rather than
    restored with its missing part grey. OpenCV's unchanged mode (needed for 16 bits and alpha) ignores the EXIF
    orientation that phone photos carry, so it is applied here: results come out upright, as viewers show the
    input. The EXIF focal length is returned as the file gives it; the command line holds it to
    `runtime.core.limits.FOCAL_LENGTH_PX` when it uses it.
    """
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    size, orientation, tags = _header(path)
    if size is not None:
        _check_pixels(path, size[0] * size[1])
    try:
        encoded = path.read_bytes()
    except OSError as error:
        raise MediaError(f"{path}: cannot read ({error.strerror or error})") from None
    if encoded.startswith(_JPEG_START) and not jpeg_complete(encoded):
        raise MediaError(f"{path}: truncated (the JPEG data ends before its end-of-image marker)")
    data = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED) if encoded else None
    if data is None:
        raise MediaError(f"{path}: not a readable image (corrupt, empty or not an image format OpenCV reads)")
    _check_pixels(path, data.shape[0] * data.shape[1])
    stored_width = data.shape[1]
    data = np.ascontiguousarray(_ORIENTATIONS.get(orientation, lambda pixels: pixels)(data))
    if data.dtype == np.uint8:
        bit_depth, scale = 8, 255.0
    elif data.dtype == np.uint16:
        bit_depth, scale = 16, 65535.0
    else:
        raise MediaError(f"{path}: {data.dtype} samples are not supported (8- or 16-bit integer images only)")
    gray = data.ndim == 2 or data.shape[2] == 1
    alpha = None
    if gray:
        bgr = np.repeat(data.reshape(data.shape[0], data.shape[1], 1), 3, axis=2)
    elif data.shape[2] == 4:
        bgr, alpha = data[..., :3], data[..., 3]
    elif data.shape[2] == 3:
        bgr = data
    else:
        raise MediaError(f"{path}: {data.shape[2]} channels are not supported (gray, RGB or RGBA)")
    rgb = bgr[..., ::-1].astype(np.float32) / np.float32(scale)
    return Picture(rgb, bit_depth, gray, alpha, exif_focal_length(tags, stored_width, *rgb.shape[:2]))


def _check_pixels(path: Path, pixels: int) -> None:
    """Refuse an image of more pixels than `IMAGE_PIXELS` allows, in one line naming the file and the limit."""
    try:
        IMAGE_PIXELS.check(pixels, str(path))
    except LimitError as error:
        raise MediaError(f"{error} ({IMAGE_PIXELS.reason})") from None


_JPEG_START = b"\xff\xd8"
#: A JPEG marker, found also inside a scan's entropy-coded data: 0xFF followed by anything but a stuffed zero, a
#: fill byte or a restart marker (RST0-7), which all occur within a scan.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")
#: Markers without a length field: TEM and SOI.
_JPEG_STANDALONE = frozenset({0x01, 0xD8})


def jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG stream reaches its end-of-image marker (EOI). Segments are skipped by their lengths (an EXIF
    thumbnail's own EOI is not taken for the image's), scans searched for the marker that ends them; data after the
    EOI (phone makers append some) does not matter."""
    position = len(_JPEG_START)
    while (found := _JPEG_MARKER.search(data, position)) is not None:
        marker, position = data[found.start() + 1], found.end()
        if marker == 0xD9:
            return True
        if marker not in _JPEG_STANDALONE:
            if position + 2 > len(data):
                return False
            position += int.from_bytes(data[position : position + 2], "big")
    return False


def exif_orientation(path: Path) -> int:
    """The EXIF orientation tag of an image file (1, upright, when it has none or cannot be read)."""
    return _header(path)[1]


def _header(path: Path) -> tuple[tuple[int, int] | None, int, dict[int, Any]]:
    """An image file's size (width, height) as its header gives it (None when Pillow does not read the format), its
    EXIF orientation (1 when absent) and its EXIF sub-IFD tags (empty when absent or unreadable).

    Pillow refuses images above its decompression-bomb threshold while reading the header: that is said as the
    `IMAGE_PIXELS` limit, in one line naming the file. Opened by its path, Pillow loads only the plugin its suffix
    names.
    """
    try:
        with warnings.catch_warnings():  # the size is held to IMAGE_PIXELS below, in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as error:
        found = re.search(r"\((\d+) pixels\)", str(error))
        if found is not None:
            _check_pixels(path, int(found.group(1)))
        raise MediaError(f"{path}: {error}") from None
    except (OSError, ValueError, SyntaxError, TypeError):  # Pillow's errors on unknown or damaged files
        return None, 1, {}
    with image:
        try:
            exif = image.getexif()
            return image.size, int(exif.get(EXIF_ORIENTATION, 1)), dict(exif.get_ifd(EXIF_IFD))
        except (OSError, ValueError, SyntaxError, TypeError):  # damaged or unusual tags
            return image.size, 1, {}


def to_file_pixels(rgb: np.ndarray, like: Picture | None = None) -> np.ndarray:
    """Float RGB in [0, 1] -> the pixels to write: BGR (or gray, or BGRA with the input's alpha), 8 or 16 bit."""
    pixels = quantize(rgb[..., ::-1], like.bit_depth if like else 8)
    if like is not None and like.gray:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    if like is not None and like.alpha is not None:
        return np.dstack([pixels, like.alpha])
    return pixels


def make_outdir(path: Path) -> None:
    """Create an output folder before any work, so a place that cannot hold results fails first."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MediaError(f"{path}: cannot create the output folder ({error.strerror or error})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise MediaError(f"{path}: the output folder is not writable")


def write_image(path: Path, pixels: np.ndarray) -> None:
    """Encode by the file's suffix and write atomically."""
    ok, encoded = cv2.imencode(path.suffix, pixels)
    if not ok:
        raise MediaError(f"{path}: OpenCV cannot encode {pixels.dtype} {pixels.shape} as {path.suffix}")
    write_bytes(path, encoded.tobytes())


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file atomically: a temporary file in the same folder, renamed into place."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def _temporary_beside(path: Path) -> Path:
    """A new empty file beside `path`, with its suffix (writers pick the format by it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    except OSError as error:
        raise MediaError(f"{path}: cannot write here ({error.strerror or error})") from None
    os.close(handle)
    return Path(name)


def _publish(temporary: Path, path: Path) -> None:
    """Rename a finished temporary file into place; when that fails, remove it and say why in one line."""
    try:
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise MediaError(f"{path}: cannot write here ({error.strerror or error})") from None


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed into place if the block succeeds and removed if it fails."""
    temporary = _temporary_beside(path)
    try:
        yield temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _publish(temporary, path)


def write_gif(path: Path, frames_rgb: list[np.ndarray], fps: float) -> None:
    """An animated GIF (looping) of uint8 RGB frames, written atomically."""
    images = [Image.fromarray(frame) for frame in frames_rgb]
    with atomic_path(path) as temporary:
        images[0].save(
            temporary, format="GIF", save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0
        )


class VideoReader:
    """Frames of a video file or camera as uint8 BGR, with the source's frame rate and frame count."""

    def __init__(self, source: Path | int) -> None:
        self.source = source
        self.capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
        if not self.capture.isOpened():
            kind = "camera" if isinstance(source, int) else "video"
            raise MediaError(f"{source}: cannot open {kind} (missing, empty, corrupt or no decoder)")
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not isinstance(source, int) else 0

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = self.capture.read()
                if not ok:
                    return
                yield frame
        finally:
            self.close()

    @property
    def timestamp_s(self) -> float:
        """The presentation time of the frame read last, in seconds from the video's start (the container's, so
        variable frame rates are followed)."""
        return float(self.capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000

    def close(self) -> None:
        """Release the file or camera (also done when iteration ends)."""
        self.capture.release()


class VideoWriter:
    """An MP4 written to a temporary file and renamed into place on `close()`; `abort()` removes it.

    MPEG-4 Part 2 (`mp4v`) frames have even sides: OpenCV's FFmpeg writer drops the last column or row of an odd
    size (a 75x53 video comes out 74x52).
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path = path
        self.temporary = _temporary_beside(path)
        self.writer = cv2.VideoWriter(str(self.temporary), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            self.abort()
            raise MediaError(f"{path}: OpenCV cannot write MP4 video here")

    def write(self, frame_bgr: np.ndarray) -> None:
        self.writer.write(frame_bgr)

    def close(self) -> None:
        self.writer.release()
        _publish(self.temporary, self.path)

    def abort(self) -> None:
        self.writer.release()
        self.temporary.unlink(missing_ok=True)
