import cv2
import numpy as np
import pytest

from runtime.core.limits import FOCAL_LENGTH_PX, IMAGE_PIXELS, LimitError
from runtime.io import media
from runtime.io.batch import Options, focal_length_for
from tests.runtime.conftest import limit_refusal


def gradient(height: int = 40, width: int = 60) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([x / (width - 1), y / (height - 1), 0.5 * np.ones_like(x)]).astype(np.float32)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_rgb_round_trip_keeps_bit_depth(tmp_path, bit_depth):
    scale, dtype = (255, np.uint8) if bit_depth == 8 else (65535, np.uint16)
    pixels = (gradient()[..., ::-1] * scale).round().astype(dtype)
    cv2.imwrite(str(tmp_path / "in.png"), pixels)
    picture = media.read_image(tmp_path / "in.png")
    assert picture.bit_depth == bit_depth and not picture.gray and picture.alpha is None
    assert np.abs(picture.rgb - gradient()).max() <= 0.5 / scale + 1e-6
    assert np.array_equal(media.to_file_pixels(picture.rgb, picture), pixels)


def test_gray_comes_in_as_rgb_and_goes_out_gray(tmp_path):
    cv2.imwrite(str(tmp_path / "gray.png"), (gradient()[..., 0] * 255).astype(np.uint8))
    picture = media.read_image(tmp_path / "gray.png")
    assert picture.gray and picture.rgb.shape == (40, 60, 3)
    assert media.to_file_pixels(picture.rgb, picture).shape == (40, 60)


def test_alpha_is_kept_as_it_was(tmp_path):
    alpha = np.tile(np.arange(60, dtype=np.uint8), (40, 1))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([(gradient() * 255).astype(np.uint8), alpha]))
    picture = media.read_image(tmp_path / "rgba.png")
    assert picture.rgb.shape == (40, 60, 3)
    out = media.to_file_pixels(picture.rgb, picture)
    assert out.shape == (40, 60, 4) and np.array_equal(out[..., 3], alpha)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not a readable image"),
        ("text.jpg", b"this is not a picture\n", "not a readable image"),
        ("empty.png", b"", "not a readable image"),
    ],
)
def test_unreadable_images_are_refused_in_one_line(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(media.MediaError) as error:
        media.read_image(tmp_path / name)
    assert str(error.value).startswith(str(tmp_path / name)) and message in str(error.value)


def test_float_images_are_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "float.tiff"), gradient())
    with pytest.raises(media.MediaError, match="float32 samples are not supported"):
        media.read_image(tmp_path / "float.tiff")


def test_failed_writes_leave_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError), media.atomic_path(tmp_path / "out.png") as temporary:
        temporary.write_bytes(b"partial")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "blocker").write_bytes(b"")
    with pytest.raises(media.MediaError, match="cannot write here"):
        media.write_bytes(tmp_path / "blocker" / "x.png", b"")


def test_video_round_trip_keeps_frame_count_and_rate(tmp_path):
    writer = media.VideoWriter(tmp_path / "clip.mp4", 12.0, (64, 48))
    for value in range(7):
        writer.write(np.full((48, 64, 3), value * 30, np.uint8))
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]
    reader = media.VideoReader(tmp_path / "clip.mp4")
    assert reader.fps == pytest.approx(12.0) and reader.frame_count == 7
    assert len(list(reader)) == 7


def test_a_zero_byte_video_is_refused(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(media.MediaError, match="cannot open video"):
        media.VideoReader(tmp_path / "empty.mp4")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_photos_come_in_upright_as_viewers_show_them(tmp_path, orientation):
    """OpenCV's unchanged mode ignores EXIF orientation; read_image applies it like Pillow's exif_transpose."""
    from PIL import Image, ImageOps

    stored = (gradient(24, 36) * 255).round().astype(np.uint8)  # RGB, not square: rotations show in the shape
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[media.EXIF_ORIENTATION] = orientation
    image.save(tmp_path / "photo.png", exif=exif)
    with Image.open(tmp_path / "photo.png") as opened:
        upright = np.asarray(ImageOps.exif_transpose(opened))
    assert media.exif_orientation(tmp_path / "photo.png") == orientation
    picture = media.read_image(tmp_path / "photo.png")
    assert np.array_equal(np.round(picture.rgb * 255).astype(np.uint8), upright)


FOCAL_PLANE = {media.EXIF_FOCAL_LENGTH: 50.0, media.EXIF_FOCAL_PLANE_X_RESOLUTION: 4000.0}  # px per inch


@pytest.mark.parametrize(
    "tags, pixels, source",
    [
        # FocalLength x the sensor's pixels per mm: exact, and ahead of the 35 mm equivalent.
        ({**FOCAL_PLANE, media.EXIF_FOCAL_LENGTH_35MM: 80}, 50 * 4000 / 25.4, "FocalLength 50 mm at 157.48 px/mm"),
        ({**FOCAL_PLANE, media.EXIF_FOCAL_PLANE_UNIT: 3}, 50 * 4000 / 10, "FocalLength 50 mm at 400 px/mm"),
        # The resolution refers to a 4x wider image: this one was shrunk since.
        ({**FOCAL_PLANE, media.EXIF_PIXEL_X_DIMENSION: 4 * 36}, 50 * 4000 / 25.4 / 4, "FocalLength 50 mm"),
        # An unknown unit, or no resolution: the 35 mm equivalent over the diagonal, else nothing.
        ({**FOCAL_PLANE, media.EXIF_FOCAL_PLANE_UNIT: 9, media.EXIF_FOCAL_LENGTH_35MM: 26}, None, "26 mm (35 mm eq"),
        ({media.EXIF_FOCAL_LENGTH: 4.2, media.EXIF_FOCAL_LENGTH_35MM: 26}, None, "26 mm (35 mm equivalent)"),
        ({media.EXIF_FOCAL_LENGTH_35MM: 0}, None, None),
        ({media.EXIF_FOCAL_LENGTH: (1, 2), media.EXIF_FOCAL_PLANE_X_RESOLUTION: "x"}, None, None),
        ({}, None, None),
    ],
)
def test_a_photos_focal_length_is_read_from_its_exif(tmp_path, tags, pixels, source):
    """Tags in the EXIF sub-IFD of a rotated JPEG (orientation 6: stored 36 wide, upright 24 wide)."""
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    image = Image.fromarray((gradient(24, 36) * 255).round().astype(np.uint8))
    exif = image.getexif()
    exif[media.EXIF_ORIENTATION] = 6
    for tag, value in tags.items():
        exif.get_ifd(media.EXIF_IFD)[tag] = IFDRational(value) if isinstance(value, float) else value
    image.save(tmp_path / "photo.jpg", exif=exif)
    picture = media.read_image(tmp_path / "photo.jpg")
    assert picture.rgb.shape == (36, 24, 3)
    if source is None:
        assert picture.exif_focal_length is None
        return
    if pixels is None:  # the 35 mm equivalent; this image is 36 x 24 px, the film frame 36 x 24 mm
        pixels = 26.0
    assert picture.exif_focal_length.pixels == pytest.approx(pixels)
    assert picture.exif_focal_length.source.startswith(source)


def jpeg_bytes(tmp_path) -> bytes:
    cv2.imwrite(str(tmp_path / "whole.jpg"), (gradient() * 255).astype(np.uint8))
    return (tmp_path / "whole.jpg").read_bytes()


def test_a_truncated_jpeg_is_refused_not_restored_with_a_grey_bottom(tmp_path):
    """OpenCV's imread decodes a truncated JPEG silently, its missing rows grey; the data must reach its EOI."""
    whole = jpeg_bytes(tmp_path)
    assert media.jpeg_complete(whole)
    for cut in (len(whole) // 2, len(whole) - 2):
        (tmp_path / "cut.jpg").write_bytes(whole[:cut])
        with pytest.raises(media.MediaError) as error:
            media.read_image(tmp_path / "cut.jpg")
        expected = f"{tmp_path / 'cut.jpg'}: truncated (the JPEG data ends before its end-of-image marker)"
        assert str(error.value) == expected
    # An EOI inside a segment (an EXIF thumbnail's, here a comment's) is not the image's end ...
    comment = b"\xff\xfe" + (2 + 4).to_bytes(2, "big") + b"\xff\xd9\xff\xd9"
    assert not media.jpeg_complete(whole[:2] + comment + whole[2 : len(whole) // 2])
    # ... and data a camera appends after the EOI does not matter.
    (tmp_path / "trailer.jpg").write_bytes(whole + b"\x00MAKERDATA\xff\xda\x00\x04\x01\x02")
    assert media.read_image(tmp_path / "trailer.jpg").rgb.shape == (40, 60, 3)


def test_an_image_above_the_pixel_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    """13500 x 13500 lies between Pillow's decompression-bomb limit and OpenCV's: one line, nothing decoded."""
    from PIL import Image

    Image.new("1", (13500, 13500)).save(tmp_path / "bomb.png")  # a few KB on disk
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    monkeypatch.setattr(media.cv2, "imdecode", lambda *_: pytest.fail("decoded"))
    with pytest.raises(media.MediaError) as error:
        media.read_image(tmp_path / "bomb.png")
    assert str(error.value) == limit_refusal(IMAGE_PIXELS, 13500 * 13500, str(tmp_path / "bomb.png"))
    assert str(error.value).endswith(f" ({IMAGE_PIXELS.reason})") and "\n" not in str(error.value)


def test_an_absurd_exif_focal_length_is_read_as_the_file_gives_it_and_refused_where_used(tmp_path):
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    image = Image.fromarray((gradient() * 255).round().astype(np.uint8))
    exif = image.getexif()
    sub = exif.get_ifd(media.EXIF_IFD)
    sub[media.EXIF_FOCAL_LENGTH], sub[media.EXIF_FOCAL_PLANE_X_RESOLUTION] = IFDRational(1000.0), IFDRational(1e6)
    sub[media.EXIF_FOCAL_PLANE_UNIT] = 5  # um: 1e9 px per mm, a 1e12 px focal length
    image.save(tmp_path / "photo.jpg", exif=exif)
    read = media.read_image(tmp_path / "photo.jpg").exif_focal_length
    assert read.pixels == pytest.approx(1e12) and read.source.startswith("FocalLength 1000 mm at 1e+09 px/mm")
    options = Options(tmp_path)
    with pytest.raises(LimitError) as error:
        focal_length_for(options, (40, 60), 1.0, read, tmp_path / "photo.jpg")
    source = f"{tmp_path / 'photo.jpg'} EXIF ({read.source})"
    assert str(error.value) == limit_refusal(FOCAL_LENGTH_PX, read.pixels, source)
    # Given the focal length another way, the photo's EXIF is not used, so not refused.
    overridden = Options(tmp_path, focal_length=500.0)
    assert focal_length_for(overridden, (40, 60), 1.0, read, tmp_path / "photo.jpg") == (500.0, "--focal-length")


def test_a_rename_that_fails_leaves_no_temporary_file(tmp_path):
    (tmp_path / "taken.png").mkdir()
    (tmp_path / "taken.png" / "inside").write_bytes(b"")  # a non-empty folder where the file should go
    with pytest.raises(media.MediaError, match=r"taken\.png: cannot write here \("):
        media.write_bytes(tmp_path / "taken.png", b"data")
    writer = media.VideoWriter(tmp_path / "taken.png", 12.0, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(media.MediaError, match=r"taken\.png: cannot write here \("):
        writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["taken.png"]
