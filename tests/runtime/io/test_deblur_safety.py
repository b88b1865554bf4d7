"""`python -m runtime.deblur` on the output side: no input overwritten, no write out of `-o`, no result folder mixed
from two runs or left half-written, every refused input one line and the batch going on, Ctrl-C and SIGTERM
stopping with a summary."""

import dataclasses
import errno
import functools
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from runtime.core.deblurrer import Deblurrer
from runtime.core.limits import FOCAL_LENGTH_PX, IMAGE_PIXELS
from runtime.io import batch as batch_module
from runtime.io import media, results
from runtime.io.deblur import main
from runtime.io.results import ResultFolder
from tests import conftest
from tests.runtime.conftest import deblur_until_signalled, limit_refusal, smooth_bgr8, write_video

ROOT = Path(__file__).resolve().parents[3]
HEIGHT, WIDTH = 48, 64
IMAGE_OUTPUTS = ("restored.png", "reblurred.png", "trajectory.json", "trajectory.csv", "kernels.png", "trajectory.png")

#: `python -m runtime.deblur` in this process: (exit code, stdout, stderr).
run = functools.partial(conftest.run, main)


def snapshot(folder: Path) -> dict[Path, tuple[bytes, int]]:
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in folder.rglob("*") if path.is_file()}


def leftovers(outdir: Path) -> list[Path]:
    """Temporary files or folders under `outdir`: hidden ones, `.tmp` or `.old`."""
    return [p for p in outdir.rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".old")]


def failures(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("failed: ")]


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), smooth_bgr8(HEIGHT, WIDTH))
    return path


@pytest.fixture
def common(small_bundle) -> list[object]:
    return ["--engine", small_bundle, "--backend", "ort-cpu"]


def test_an_input_deep_inside_another_inputs_result_folder_is_never_written_over(common, photo, tmp_path):
    """`OUT/photo/frames/frame_00.png` given with `photo.png --sequence`: photo's results would replace it before
    it is read. Photo is refused, the frame is read untouched."""
    outdir = tmp_path / "out"
    assert run(*common, "--sequence", "-o", outdir, photo)[0] == 0
    frame = outdir / "photo" / "frames" / "frame_00.png"
    before = snapshot(outdir / "photo")

    code, _, stderr = run(*common, "--sequence", "-o", outdir, photo, frame)

    assert code == 1
    assert failures(stderr) == [
        f"failed: {photo}: {outdir / 'photo'}: results would go where the input {frame} lies; choose another -o"
    ]
    assert "1 done, 1 failed" in stderr
    assert snapshot(outdir / "photo") == before  # not a byte or a timestamp changed
    assert (outdir / "frame_00" / "restored.png").is_file() and not leftovers(outdir)


def test_a_result_folder_that_is_a_link_is_not_written_through(common, photo, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "restored.png").write_bytes(b"not to be overwritten")
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "photo").symlink_to(elsewhere)
    other = tmp_path / "other.png"
    cv2.imwrite(str(other), smooth_bgr8(HEIGHT, WIDTH, seed=1))

    code, _, stderr = run(*common, "-o", outdir, photo, other)

    assert code == 1
    assert failures(stderr) == [
        f"failed: {photo}: {outdir / 'photo'}: a symbolic link (to {elsewhere}); results are not written through one"
    ]
    assert [p.name for p in elsewhere.iterdir()] == ["restored.png"]
    assert (elsewhere / "restored.png").read_bytes() == b"not to be overwritten"
    assert (outdir / "photo").is_symlink() and (outdir / "other" / "restored.png").is_file()


def test_a_name_of_dots_stays_inside_the_output_folder(common, photo, tmp_path):
    """`...png` has the stem `..`; its results go to `OUT/image`, not over OUT's parent."""
    dots = tmp_path / "...png"
    dots.write_bytes(photo.read_bytes())
    outdir = tmp_path / "out"
    assert run(*common, "-o", outdir, dots)[0] == 0
    assert sorted(p.name for p in outdir.iterdir()) == ["image"]
    assert not (tmp_path / "restored.png").exists()


def test_a_folder_outside_or_over_the_output_folder_is_refused(tmp_path):
    for name in ("..", "."):
        with pytest.raises(media.MediaError, match="lies outside the output folder"):
            ResultFolder(tmp_path, name, frozenset(), batch_module.OUTPUTS)
    assert list(tmp_path.iterdir()) == []


def test_two_runs_into_one_folder_never_mix_their_files(common, photo, tmp_path, monkeypatch):
    """Another run puts its `photo` folder in place while this one works on it: this one's results are discarded,
    said in one line and counted as failed; the folder holds the other run's files only."""
    outdir = tmp_path / "out"
    image = batch_module._image

    def racing(deblurrer, source, options, target, *rest):
        image(deblurrer, source, options, target, *rest)
        with ResultFolder(options.outdir, source.name, frozenset(), batch_module.OUTPUTS) as theirs:
            (theirs / "restored.png").write_bytes(b"the other run's")

    monkeypatch.setattr(batch_module, "_image", racing)
    code, _, stderr = run(*common, "-o", outdir, photo)

    assert code == 1 and "0 done, 1 failed" in stderr
    assert failures(stderr) == [
        f"failed: {photo}: {outdir / 'photo'}: changed while this run worked on it (another run into the same -o?); "
        "what is there is kept and this run's results discarded"
    ]
    assert [p.name for p in (outdir / "photo").iterdir()] == ["restored.png"]
    assert (outdir / "photo" / "restored.png").read_bytes() == b"the other run's"
    assert not leftovers(outdir)


def test_a_rerun_replaces_a_result_folder_whole_and_keeps_files_it_does_not_write(common, photo, tmp_path):
    outdir = tmp_path / "out"
    assert run(*common, "--sequence", "-o", outdir, photo)[0] == 0
    assert (outdir / "photo" / "frames").is_dir()
    code, _, stderr = run(*common, "-o", outdir, photo)
    assert code == 0, stderr
    assert sorted(p.name for p in (outdir / "photo").iterdir()) == sorted(IMAGE_OUTPUTS)  # no stale frames
    assert not leftovers(outdir)

    (outdir / "photo" / "notes.txt").write_text("mine\n")
    code, _, stderr = run(*common, "-o", outdir, photo)
    assert code == 1
    assert failures(stderr) == [
        f"failed: {photo}: {outdir / 'photo'}: holds notes.txt, which this command does not write; "
        "move it or choose another -o"
    ]
    assert (outdir / "photo" / "notes.txt").read_text() == "mine\n"


def test_a_failed_source_leaves_no_folder_and_no_temporary_file(tmp_path):
    with pytest.raises(RuntimeError), ResultFolder(tmp_path, "photo", frozenset(), batch_module.OUTPUTS) as target:
        (target / "restored.png").write_bytes(b"half of the results")
        raise RuntimeError("failed half-way")
    assert list(tmp_path.iterdir()) == []


def test_a_result_folder_that_cannot_be_put_in_place_leaves_the_previous_one_and_no_temporary_file(
    tmp_path, monkeypatch
):
    with ResultFolder(tmp_path, "photo", frozenset(), batch_module.OUTPUTS) as target:
        (target / "restored.png").write_bytes(b"the previous run's")
    rename = os.rename

    def failing_into_place(source, destination):
        if Path(source).suffix == ".tmp":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        rename(source, destination)

    monkeypatch.setattr(results.os, "rename", failing_into_place)
    with pytest.raises(media.MediaError, match=r"photo: cannot put the results in place \(Input/output error\)$"):
        with ResultFolder(tmp_path, "photo", frozenset(), batch_module.OUTPUTS) as target:
            (target / "restored.png").write_bytes(b"this run's")
    assert [p.name for p in tmp_path.iterdir()] == ["photo"]
    assert [p.name for p in (tmp_path / "photo").iterdir()] == ["restored.png"]
    assert (tmp_path / "photo" / "restored.png").read_bytes() == b"the previous run's"


def test_unreadable_absurd_and_non_finite_inputs_are_one_line_each_and_the_batch_goes_on(
    common, photo, tmp_path, monkeypatch
):
    """A decompression bomb, a truncated JPEG, an absurd EXIF focal length and a restoration gone NaN."""
    Image.new("1", (13500, 13500)).save(tmp_path / "bomb.png")
    cv2.imwrite(str(tmp_path / "whole.jpg"), smooth_bgr8(HEIGHT, WIDTH))
    whole = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    exif_photo = Image.fromarray(smooth_bgr8(HEIGHT, WIDTH)[..., ::-1])
    exif = exif_photo.getexif()
    exif.get_ifd(media.EXIF_IFD)[media.EXIF_FOCAL_LENGTH] = IFDRational(1e6)  # mm, at 1e6 px per inch
    exif.get_ifd(media.EXIF_IFD)[media.EXIF_FOCAL_PLANE_X_RESOLUTION] = IFDRational(1e6)
    exif_photo.save(tmp_path / "lens.jpg", exif=exif)
    diverging = tmp_path / "diverging.png"
    cv2.imwrite(str(diverging), smooth_bgr8(2 * HEIGHT, WIDTH))
    restore = Deblurrer.restore

    def restore_nan_when_tall(self, rgb, *arguments, **keywords):
        result = restore(self, rgb, *arguments, **keywords)
        tall = rgb.shape[0] == 2 * HEIGHT
        return dataclasses.replace(result, restored=np.full_like(result.restored, np.nan)) if tall else result

    monkeypatch.setattr(Deblurrer, "restore", restore_nan_when_tall)
    names = ["bomb.png", "cut.jpg", "lens.jpg", "diverging.png", "photo.png"]
    outdir = tmp_path / "out"

    code, _, stderr = run(*common, "-o", outdir, *(tmp_path / name for name in names))

    assert code == 1 and "1 done, 4 failed" in stderr
    bomb, cut, lens, nan = failures(stderr)
    assert bomb == f"failed: {limit_refusal(IMAGE_PIXELS, 13500 * 13500, str(tmp_path / 'bomb.png'))}"
    assert cut == f"failed: {tmp_path / 'cut.jpg'}: truncated (the JPEG data ends before its end-of-image marker)"
    read = media.exif_focal_length(dict(exif.get_ifd(media.EXIF_IFD)), WIDTH, HEIGHT, WIDTH)
    assert read.source == "FocalLength 1e+06 mm at 39370.1 px/mm on the sensor"
    source = f"{tmp_path / 'lens.jpg'} EXIF ({read.source})"
    assert lens == f"failed: {limit_refusal(FOCAL_LENGTH_PX, read.pixels, source)}"
    assert nan == (
        f"failed: {diverging}: the restored image holds NaN or infinite values (an absurd --sigma or focal length "
        "gives that); nothing written"
    )
    assert sorted(p.name for p in outdir.iterdir()) == ["photo"] and not leftovers(outdir)
    assert "Premature end of JPEG file" not in stderr  # refused before OpenCV decodes it


def test_a_keyboard_interrupt_stops_after_the_current_source_with_a_summary(common, photo, tmp_path, monkeypatch):
    """Ctrl-C as a KeyboardInterrupt (where no handler recorded it): the source at hand leaves nothing, the
    summary counts the rest skipped, exit code 130."""
    restore = Deblurrer.restore
    calls = []

    def interrupted_on_the_second(self, *arguments, **keywords):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return restore(self, *arguments, **keywords)

    monkeypatch.setattr(Deblurrer, "restore", interrupted_on_the_second)
    copies = [tmp_path / f"copy{number}.png" for number in (1, 2)]
    for copy in copies:
        copy.write_bytes(photo.read_bytes())
    outdir = tmp_path / "out"

    code, _, stderr = run(*common, "-o", outdir, photo, *copies)

    assert code == 130
    assert "interrupted by SIGINT: 1 done, 0 failed, 2 skipped in " in stderr
    assert sorted(p.name for p in outdir.iterdir()) == ["photo"] and not leftovers(outdir)


@pytest.mark.parametrize("number, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_batch_after_the_current_write(small_bundle, photo, tmp_path, number, code):
    """A real `python -m runtime.deblur`: the signal comes once the first result is in place, while a long video
    is being restored; the video leaves nothing, the summary says so, and no temporary file is left."""
    clip = write_video(tmp_path / "clip.mp4", frames=400)
    last = tmp_path / "last.png"
    last.write_bytes(photo.read_bytes())
    outdir = tmp_path / "out"
    arguments = ["--engine", small_bundle, "--backend", "ort-cpu", "-o", outdir, photo, clip, last]
    returncode, stderr = deblur_until_signalled(arguments, outdir / "photo", number)
    assert returncode == code, stderr
    name = signal.Signals(number).name
    summary = [line for line in stderr.splitlines() if line.startswith("interrupted by ")]
    assert len(summary) == 1 and summary[0].startswith(f"interrupted by {name}: 1 done, 0 failed, 2 skipped in ")
    assert f"{name}: stopping once the current step is done" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in outdir.iterdir()) == ["photo"] and not leftovers(outdir)
    assert all((outdir / "photo" / output).is_file() for output in IMAGE_OUTPUTS)
