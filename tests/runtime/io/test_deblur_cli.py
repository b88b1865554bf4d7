"""`python -m runtime.deblur` end to end on the CPU backend: every output, every kind of input, every refusal."""

import csv
import functools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from runtime.core.backends import BackendSettings, backends
from runtime.core.backends.base import BackendError
from runtime.core.bundle import load_bundle
from runtime.core.deblurrer import NET_ROLES
from runtime.core.motion import gyro_trajectory, read_gyro_log, read_trajectory
from runtime.io import deblur
from runtime.io.deblur import main
from tests import conftest
from tests.runtime.conftest import smooth_bgr8, video_facts, write_trajectory_file, write_video

ROOT = Path(__file__).resolve().parents[3]
HEIGHT, WIDTH = 48, 64
IMAGE_OUTPUTS = ("restored.png", "reblurred.png", "trajectory.json", "trajectory.csv", "kernels.png", "trajectory.png")
SEQUENCE_OUTPUTS = ("sequence.gif", "sequence.mp4", *(f"frames/frame_{i:02d}.png" for i in range(25)))


#: `python -m runtime.deblur` in this process: (exit code, stdout, stderr).
run = functools.partial(conftest.run, main)


def snapshot(folder: Path) -> dict[Path, tuple[bytes, int]]:
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in folder.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """An 8-bit colour photo, a 16-bit one, a gray one, one with alpha and a 5-frame video at 12 fps."""
    folder = tmp_path_factory.mktemp("inputs")
    photo = smooth_bgr8(HEIGHT, WIDTH)
    cv2.imwrite(str(folder / "photo.png"), photo)
    cv2.imwrite(str(folder / "deep.png"), photo.astype(np.uint16) * 257 + 100)
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    alpha = np.tile(np.linspace(0, 255, WIDTH).astype(np.uint8), (HEIGHT, 1))
    cv2.imwrite(str(folder / "rgba.png"), np.dstack([photo, alpha]))
    write_video(folder / "clip.mp4")
    return folder


@pytest.fixture(scope="module")
def batch(inputs, small_bundle, tmp_path_factory):
    """One run over every input, with the sequence and the timings: (exit code, stdout, stderr, outdir)."""
    outdir = tmp_path_factory.mktemp("results") / "out"
    arguments = ["--engine", small_bundle, "--backend", "ort-cpu", "--sequence", "--timings", "-o", outdir]
    code, stdout, stderr = run(*arguments, *(inputs / name for name in ("photo.png", "deep.png", "gray.png")), inputs)
    return code, stdout, stderr, outdir


def test_a_batch_completes_and_says_so(batch):
    code, _, stderr, outdir = batch
    assert code == 0, stderr
    assert "backend" not in stderr  # an explicit backend is not announced
    assert "8 done, 0 failed" in stderr  # the folder repeats three images: their results go to name_2
    assert sorted(p.name for p in outdir.iterdir()) == [
        "clip", "deep", "deep_2", "gray", "gray_2", "photo", "photo_2", "rgba",
    ]  # fmt: skip
    assert not [p for p in outdir.rglob(".*")]  # no temporary file left behind


@pytest.mark.parametrize("name", ["photo", "deep", "gray", "rgba"])
def test_every_image_output_is_written(batch, name):
    outdir = batch[3] / name
    for output in (*IMAGE_OUTPUTS, *SEQUENCE_OUTPUTS):
        assert (outdir / output).is_file() and (outdir / output).stat().st_size > 0, output
    with Image.open(outdir / "sequence.gif") as gif:
        assert gif.n_frames == 25 and gif.size == (WIDTH, HEIGHT)
    assert video_facts(outdir / "sequence.mp4") == (25, 10.0, (WIDTH, HEIGHT))
    for number in (0, 24):
        assert cv2.imread(str(outdir / f"frames/frame_{number:02d}.png")).shape == (HEIGHT, WIDTH, 3)
    assert cv2.imread(str(outdir / "trajectory.png")).shape == (480, 960, 3)
    kernels = cv2.imread(str(outdir / "kernels.png"))
    assert kernels.shape[0] / kernels.shape[1] == HEIGHT / WIDTH and max(kernels.shape) >= 512  # enlarged to read


@pytest.mark.parametrize(
    "name, dtype, shape",
    [
        ("photo", np.uint8, (HEIGHT, WIDTH, 3)),
        ("deep", np.uint16, (HEIGHT, WIDTH, 3)),
        ("gray", np.uint8, (HEIGHT, WIDTH)),
        ("rgba", np.uint8, (HEIGHT, WIDTH, 4)),
    ],
)
def test_results_keep_the_input_format(batch, inputs, name, dtype, shape):
    for output in ("restored.png", "reblurred.png"):
        pixels = cv2.imread(str(batch[3] / name / output), cv2.IMREAD_UNCHANGED)
        assert pixels.dtype == dtype and pixels.shape == shape, output
    if name == "rgba":
        alpha = cv2.imread(str(inputs / "rgba.png"), cv2.IMREAD_UNCHANGED)[..., 3]
        assert np.array_equal(cv2.imread(str(batch[3] / name / "restored.png"), cv2.IMREAD_UNCHANGED)[..., 3], alpha)
    if name == "deep":  # 16 bits are kept, not 8 bits scaled up
        assert np.any(cv2.imread(str(batch[3] / name / "restored.png"), cv2.IMREAD_UNCHANGED) % 257)


def test_the_trajectory_is_written_as_json_and_csv(batch):
    outdir = batch[3] / "photo"
    description = json.loads((outdir / "trajectory.json").read_text())
    assert np.array(description["poses"]).shape == (25, 3)
    assert description["focal_length_px"] == WIDTH and description["principal_point_px"] == [WIDTH / 2, HEIGHT / 2]
    assert description["image_size"] == {"width": WIDTH, "height": HEIGHT}
    assert description["backend"] == "ort-cpu" and description["tiles"] == 1
    assert description["estimation_side_px"] is None  # the whole image
    assert description["focal_length_source"] == "default: the longer side"
    assert set(description["timings_s"]) == {"trajectory", "restoration"} and description["refinement"] is None
    with (outdir / "trajectory.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 25 and [int(row["pose"]) for row in rows] == list(range(25))
    poses = [[float(row[key]) for key in ("pitch_rad", "yaw_rad", "roll_rad")] for row in rows]
    assert np.allclose(poses, description["poses"], rtol=0, atol=1e-12)
    assert {float(row["focal_length_px"]) for row in rows} == {WIDTH}


def test_a_video_gives_a_restored_video_at_its_frame_rate(batch):
    outdir = batch[3] / "clip"
    assert video_facts(outdir / "restored.mp4") == (5, 12.0, (WIDTH, HEIGHT))
    with (outdir / "trajectories.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 5 * 25 and {int(row["frame"]) for row in rows} == set(range(5))


def test_timings_are_printed_per_stage(batch):
    stdout = batch[1]
    line = next(line for line in stdout.splitlines() if line.startswith("photo: "))
    for stage in ("read", "trajectory", "restoration", "sequence", "write"):
        assert f"{stage} " in line and line.endswith(" ms")
    assert any(line.startswith("clip: 5 frames, per frame (median): trajectory ") for line in stdout.splitlines())


def test_bad_inputs_are_reported_and_the_good_ones_complete(small_bundle, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "good.png"), smooth_bgr8(HEIGHT, WIDTH))
    (inputs / "corrupt.png").write_bytes((inputs / "good.png").read_bytes()[:60])
    (inputs / "notes.jpg").write_text("not a picture\n")
    (inputs / "empty").mkdir()
    (inputs / "empty.mp4").write_bytes(b"")
    write_video(inputs / "short.mp4", frames=4)
    names = ["corrupt.png", "good.png", "notes.jpg", "empty", "empty.mp4", "short.mp4"]
    before = snapshot(inputs)

    code, _, stderr = run(
        "--engine", small_bundle, "--backend", "ort-cpu", "--max-frames", 2, "-o", tmp_path / "out",
        *(inputs / name for name in names),
    )  # fmt: skip

    assert code == 1
    failures = [line for line in stderr.splitlines() if line.startswith("failed: ")]
    assert len(failures) == 4
    for name, reason in [
        ("corrupt.png", "not a readable image"),
        ("notes.jpg", "not a readable image"),
        ("empty", "folder holds no images or videos"),
        ("empty.mp4", "cannot open video"),
    ]:
        assert sum(line.startswith(f"failed: {inputs / name}: {reason}") for line in failures) == 1, name
    assert "2 done, 4 failed" in stderr
    assert (tmp_path / "out" / "good" / "restored.png").is_file()
    assert video_facts(tmp_path / "out" / "short" / "restored.mp4")[0] == 2  # --max-frames
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good", "short"]
    assert snapshot(inputs) == before  # not a byte or a timestamp changed


def test_an_output_folder_that_cannot_exist_is_refused(small_bundle, inputs, tmp_path):
    (tmp_path / "file").write_text("")
    code, _, stderr = run("--engine", small_bundle, "-o", tmp_path / "file" / "out", inputs / "photo.png")
    assert code == 2
    expected = f"error: {tmp_path / 'file' / 'out'}: cannot create the output folder (Not a directory)"
    assert stderr.splitlines()[-1] == expected


def test_a_tampered_bundle_is_refused_in_one_line(bundle_copy, inputs, tmp_path):
    data = bytearray((bundle_copy / "restoration.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle_copy / "restoration.onnx").write_bytes(bytes(data))
    code, _, stderr = run("--engine", bundle_copy, "-o", tmp_path / "out", inputs / "photo.png")
    assert code == 2
    damaged = bundle_copy / "restoration.onnx"
    assert stderr == f"error: {damaged}: sha256 differs from manifest.json: the file was changed or damaged\n"
    assert not (tmp_path / "out").exists()


def test_an_unknown_backend_is_refused_by_the_parser(small_bundle, inputs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--engine", str(small_bundle), "--backend", "cuda", "-o", str(tmp_path), str(inputs / "photo.png")])
    assert exit_.value.code == 2
    assert "argument --backend: invalid choice: 'cuda'" in capsys.readouterr().err


def test_an_unavailable_backend_is_named(small_bundle, inputs, tmp_path):
    if next(b for b in backends() if b.name == "tensorrt").unavailable_reason() is None:
        pytest.skip("TensorRT runs here")
    code, _, stderr = run("--engine", small_bundle, "--backend", "tensorrt", "-o", tmp_path, inputs / "photo.png")
    assert code == 2 and len(stderr.splitlines()) == 1
    assert stderr.startswith("error: backend tensorrt cannot run here: ")


def test_rebuild_without_tensorrt_builds_nothing_and_refuses_only_the_tensorrt_backend(small_bundle, inputs, tmp_path):
    if next(b for b in backends() if b.name == "tensorrt").unavailable_reason() is None:
        pytest.skip("TensorRT runs here")
    code, _, stderr = run("--engine", small_bundle, "--rebuild", "-o", tmp_path / "auto", inputs / "photo.png")
    assert code == 0, stderr
    assert "rebuilding" not in stderr and "not rebuilt" not in stderr and "backend: ort-cpu (auto)" in stderr
    arguments = ("--rebuild", "--backend", "tensorrt", "-o", tmp_path / "tensorrt", inputs / "photo.png")
    code, _, stderr = run("--engine", small_bundle, *arguments)
    assert code == 2 and len(stderr.splitlines()) == 1
    assert stderr.startswith("error: backend tensorrt cannot run here: ")


def test_rebuild_asks_for_the_engines_the_deblurrer_loads(small_bundle, monkeypatch):
    """Where TensorRT runs: the nets at their precision, the refinement's graphs in FP32. A build that fails is the
    tensorrt backend's refusal; under auto it is said and another backend runs."""
    monkeypatch.setattr(deblur.tensorrt, "unavailable_reason", lambda: None)
    asked, said = [], []

    def rebuild_stale(bundle, roles, precision, profile, log):
        asked.append((precision, tuple(roles)))
        return bundle

    monkeypatch.setattr(deblur, "rebuild_stale", rebuild_stale)
    bundle = load_bundle(small_bundle)
    assert deblur.rebuild_engines(bundle, BackendSettings("auto", "fp16"), True, pytest.fail) is bundle
    assert asked == [("fp16", NET_ROLES), ("fp32", ("refine", "sequence"))]
    asked.clear()
    deblur.rebuild_engines(bundle, BackendSettings("tensorrt"), False, pytest.fail)
    deblur.rebuild_engines(bundle, BackendSettings("ort-cpu"), True, pytest.fail)
    assert asked == [("fp32", NET_ROLES)]

    def failing(bundle, roles, precision, profile, log):
        raise BackendError("no engine to rebuild from")

    monkeypatch.setattr(deblur, "rebuild_stale", failing)
    with pytest.raises(BackendError, match="^backend tensorrt cannot run here: no engine to rebuild from$"):
        deblur.rebuild_engines(bundle, BackendSettings("tensorrt"), False, pytest.fail)
    assert deblur.rebuild_engines(bundle, BackendSettings("auto"), False, said.append) is bundle
    assert said == ["tensorrt engines not rebuilt: no engine to rebuild from"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--focal-length", "-5"], "--focal-length must be a positive number of pixels, got -5.0"),
        (["--scale", "0"], "--scale must be a positive factor, got 0.0"),
        (["--max-side", "0"], "--max-side must be at least 1 pixel, got 0"),
        (["--sigma", "nan"], "--sigma must be a finite number >= 0, got nan"),
        (["--sigma", "1e10"], "--sigma: sigma (the noise level) 10000000000 is outside 0..0.5"),
        (["--focal-length", "1e30"], "--focal-length: focal length 1e+30 px is outside 1..1000000 px"),
        (["--max-frames", "0"], "--max-frames must be at least 1, got 0"),
        (["--tile-side", "100"], "tile side must be at least 256 px"),
        (["--estimation-side", "16"], "estimation side must be at least 32 px"),
        (["--camera", "configs/README.md"], "README.md: not a camera preset with focal_length_px and width_px"),
    ],
)
def test_meaningless_settings_are_refused(small_bundle, inputs, tmp_path, arguments, message):
    code, _, stderr = run("--engine", small_bundle, *arguments, "-o", tmp_path / "out", inputs / "photo.png")
    assert code == 2 and len(stderr.splitlines()) == 1 and message in stderr
    assert not (tmp_path / "out").exists()


def written(outdir: Path, name: str) -> tuple[float, dict, tuple[int, ...]]:
    """(focal length, image size, restored shape) of one result folder."""
    description = json.loads((outdir / name / "trajectory.json").read_text())
    shape = cv2.imread(str(outdir / name / "restored.png"), cv2.IMREAD_UNCHANGED).shape
    return description["focal_length_px"], description["image_size"], shape


def test_the_focal_length_follows_the_options(small_bundle, inputs, tmp_path):
    portrait = tmp_path / "portrait.png"
    cv2.imwrite(str(portrait), smooth_bgr8(WIDTH, HEIGHT))
    large = tmp_path / "large.png"
    cv2.imwrite(str(large), smooth_bgr8(2 * HEIGHT, 2 * WIDTH))
    common = ["--engine", small_bundle, "--backend", "ort-cpu"]
    preset = ROOT / "configs" / "cameras" / "rpi-camera-v2.yaml"  # 2714 px at 3280 x 2464

    assert run(*common, "--focal-length", 300, "-o", tmp_path / "a", inputs / "photo.png", large)[0] == 0
    assert written(tmp_path / "a", "photo") == (300.0, {"width": WIDTH, "height": HEIGHT}, (HEIGHT, WIDTH, 3))
    assert written(tmp_path / "a", "large")[0] == 300.0  # in pixels of the input, whatever its size

    assert run(*common, "--camera", preset, "-o", tmp_path / "b", inputs / "photo.png", portrait, large)[0] == 0
    assert written(tmp_path / "b", "photo")[0] == pytest.approx(2714 * WIDTH / 3280)
    assert written(tmp_path / "b", "portrait")[0] == pytest.approx(2714 * WIDTH / 3280)  # the longer side counts
    assert written(tmp_path / "b", "large")[0] == pytest.approx(2714 * 2 * WIDTH / 3280)

    # Resizing scales the focal length with the image: it is given in pixels of the input as read.
    assert run(*common, "--max-side", WIDTH, "--focal-length", 300, "-o", tmp_path / "c", large)[0] == 0
    assert written(tmp_path / "c", "large") == (150.0, {"width": WIDTH, "height": HEIGHT}, (HEIGHT, WIDTH, 3))
    assert run(*common, "--scale", 0.5, "--camera", preset, "-o", tmp_path / "d", large)[0] == 0
    assert written(tmp_path / "d", "large")[0] == pytest.approx(2714 * WIDTH / 3280)
    assert written(tmp_path / "d", "large")[1:] == ({"width": WIDTH, "height": HEIGHT}, (HEIGHT, WIDTH, 3))
    assert run(*common, "--scale", 0.5, "-o", tmp_path / "e", large)[0] == 0
    assert written(tmp_path / "e", "large")[0] == WIDTH  # the default: the longer side of what the nets see


def test_a_lens_in_the_preset_undistorts_photos_alpha_and_frames_and_refuses_another_aspect(
    small_bundle, inputs, tmp_path
):
    """Each input is resampled onto the pinhole camera before deblurring, its alpha too, and says so; an image
    whose aspect is not the calibration's fails alone, and the batch goes on."""
    preset = tmp_path / "wide.yaml"
    lens = "lens:\n  model: fisheye\n  distortion: [0.1, -0.05, 0.02, -0.005]\n"
    preset.write_text(f"focal_length_px: {WIDTH / 2}\nwidth_px: {WIDTH}\nheight_px: {HEIGHT}\n{lens}")
    square = tmp_path / "square.png"
    cv2.imwrite(str(square), smooth_bgr8(WIDTH, WIDTH))
    photos = [inputs / name for name in ("photo.png", "rgba.png", "clip.mp4")]
    code, _, stderr = run(
        "--engine", small_bundle, "--backend", "ort-cpu", "--camera", preset, "-o", tmp_path, *photos, square
    )
    assert code == 1 and "square.png" in stderr and "has another aspect" in stderr
    description = json.loads((tmp_path / "photo" / "trajectory.json").read_text())
    assert description["undistorted"] == "fisheye" and description["focal_length_px"] == WIDTH / 2
    restored_alpha = cv2.imread(str(tmp_path / "rgba" / "restored.png"), cv2.IMREAD_UNCHANGED)[..., 3]
    source_alpha = cv2.imread(str(inputs / "rgba.png"), cv2.IMREAD_UNCHANGED)[..., 3]
    assert restored_alpha.shape == source_alpha.shape and not np.array_equal(restored_alpha, source_alpha)
    assert (tmp_path / "clip" / "restored.mp4").is_file()


def test_the_gif_is_a_preview_no_larger_than_its_cap(small_bundle, inputs, tmp_path, monkeypatch):
    from runtime.io import batch as batch_module

    monkeypatch.setattr(batch_module, "SEQUENCE_GIF_MAX_SIDE", WIDTH // 2)
    arguments = ["--engine", small_bundle, "--backend", "ort-cpu", "--sequence", "-o", tmp_path]
    assert run(*arguments, inputs / "photo.png")[0] == 0
    with Image.open(tmp_path / "photo" / "sequence.gif") as gif:
        assert gif.n_frames == 25 and gif.size == (WIDTH // 2, HEIGHT // 2)
    # The frames and the MP4 keep the image's size.
    assert cv2.imread(str(tmp_path / "photo" / "frames" / "frame_00.png")).shape == (HEIGHT, WIDTH, 3)
    assert video_facts(tmp_path / "photo" / "sequence.mp4") == (25, 10.0, (WIDTH, HEIGHT))


def test_the_side_the_trajectory_net_saw_is_recorded(small_bundle, inputs, tmp_path):
    arguments = ["--engine", small_bundle, "--backend", "ort-cpu", "--estimation-side", 40, "-o", tmp_path]
    assert run(*arguments, inputs / "photo.png")[0] == 0
    assert json.loads((tmp_path / "photo" / "trajectory.json").read_text())["estimation_side_px"] == 40


def test_a_tiled_image_shows_each_tile_as_it_starts(small_bundle, tmp_path):
    large = tmp_path / "large.png"
    cv2.imwrite(str(large), smooth_bgr8(264, 288))
    common = ["--engine", small_bundle, "--backend", "ort-cpu", "--tile-side", 256, "-o", tmp_path / "out"]
    code, _, stderr = run(*common, large)
    assert code == 0, stderr
    told = [line for line in stderr.splitlines() if ": tile " in line]
    assert told == [f"[1/1] large restoring: tile {number}/4" for number in range(1, 5)]


def test_a_photos_exif_focal_length_is_used_unless_an_option_gives_one(small_bundle, tmp_path):
    """A phone photo records its 35 mm-equivalent focal length; the options still win over it."""
    photo = tmp_path / "phone.jpg"
    image = Image.fromarray(smooth_bgr8(2 * HEIGHT, 2 * WIDTH)[..., ::-1])
    exif = image.getexif()
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm, mm
    image.save(photo, exif=exif)
    common = ["--engine", small_bundle, "--backend", "ort-cpu"]

    def description(name: str) -> dict:
        return json.loads((tmp_path / name / "phone" / "trajectory.json").read_text())

    assert run(*common, "-o", tmp_path / "a", photo)[0] == 0
    exif_pixels = 26 * np.hypot(2 * HEIGHT, 2 * WIDTH) / np.hypot(36, 24)  # the same diagonal field of view
    assert description("a")["focal_length_px"] == pytest.approx(exif_pixels)
    assert description("a")["focal_length_source"] == "EXIF: 26 mm (35 mm equivalent)"
    assert run(*common, "--max-side", WIDTH, "-o", tmp_path / "b", photo)[0] == 0
    assert description("b")["focal_length_px"] == pytest.approx(exif_pixels / 2)  # in pixels of what the nets see
    assert run(*common, "--focal-length", 300, "-o", tmp_path / "c", photo)[0] == 0
    assert (description("c")["focal_length_px"], description("c")["focal_length_source"]) == (300.0, "--focal-length")


def test_auto_says_which_backend_it_picked(small_bundle, inputs, tmp_path):
    code, _, stderr = run("--engine", small_bundle, "-o", tmp_path / "out", inputs / "photo.png")
    assert code == 0, stderr
    assert "backend: ort-cpu (auto)" in stderr
    assert (tmp_path / "out" / "photo" / "restored.png").is_file()


def test_refinement_is_recorded_with_the_results(inputs, small_bundle, tmp_path):
    outdir = tmp_path / "out"
    arguments = ["--engine", small_bundle, "--backend", "ort-cpu", "-o", outdir, "--refine", 4, "--refine-rerun"]
    code, _, stderr = run(*arguments, "--refine-scales", "0.5,1", inputs / "photo.png", inputs / "clip.mp4")
    assert code == 0, stderr
    description = json.loads((outdir / "photo" / "trajectory.json").read_text())
    refinement = description["refinement"]
    assert refinement["steps_run"] == 8 and refinement["stopped"] == "steps"
    assert refinement["reblur_loss_after"] <= refinement["reblur_loss_before"]
    assert refinement["restored_with_refined_trajectory"] is True
    assert set(description["timings_s"]) == {"trajectory", "restoration", "refine", "restoration_rerun"}
    with (outdir / "clip" / "refinement.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [int(row["frame"]) for row in rows] == list(range(5))
    assert all(float(row["reblur_loss_after"]) <= float(row["reblur_loss_before"]) for row in rows)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--refine-rerun"], "--refine-rerun needs --refine"),
        (["--refine", "5", "--refine-scales", "1,0.5"], "scales must be increasing"),
        (["--refine", "5", "--refine-step-size", "0"], "step size must be a positive number"),
    ],
)
def test_bad_refine_options_are_refused(small_bundle, inputs, tmp_path, arguments, message):
    code, _, stderr = run("--engine", small_bundle, "-o", tmp_path / "out", *arguments, inputs / "photo.png")
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


# --- known camera motion ------------------------------------------------------------------------------------


def poses_written(folder: Path) -> np.ndarray:
    with (folder / "trajectory.csv").open() as file:
        return np.array(
            [[float(row[key]) for key in ("pitch_rad", "yaw_rad", "roll_rad")] for row in csv.DictReader(file)]
        )


def test_a_trajectory_file_replaces_the_estimate(small_bundle, inputs, tmp_path):
    recorded = write_trajectory_file(tmp_path / "shake.txt", rows=40, seed=5)
    common = ["--engine", small_bundle, "--backend", "ort-cpu"]
    assert run(*common, "--trajectory", recorded, "-o", tmp_path / "a", inputs / "photo.png")[0] == 0
    np.testing.assert_allclose(poses_written(tmp_path / "a" / "photo"), read_trajectory(recorded), rtol=0, atol=1e-9)
    description = json.loads((tmp_path / "a" / "photo" / "trajectory.json").read_text())
    assert description["trajectory_source"] == f"file {recorded}"
    assert set(description["timings_s"]) == {"restoration"}  # the trajectory net did not run

    # A run's own trajectory.json, given back, restores the same image bit for bit.
    assert run(*common, "-o", tmp_path / "b", inputs / "photo.png")[0] == 0
    estimate = tmp_path / "b" / "photo" / "trajectory.json"
    assert json.loads(estimate.read_text())["trajectory_source"] == "estimated by the trajectory net"
    assert run(*common, "--trajectory", estimate, "-o", tmp_path / "c", inputs / "photo.png")[0] == 0
    restored = [cv2.imread(str(tmp_path / name / "photo" / "restored.png")) for name in ("b", "c")]
    np.testing.assert_array_equal(*restored)


def test_a_gyroscope_log_gives_photos_and_video_frames_their_motion(small_bundle, inputs, tmp_path):
    times = np.arange(0.0, 1.0, 0.002)
    rates = np.stack([0.3 * np.sin(20 * times), 0.2 * np.cos(13 * times), 0.1 * times], axis=1)
    log = tmp_path / "gyro.csv"
    np.savetxt(log, np.column_stack([times, rates]), delimiter=",", header="time_s,x,y,z", comments="")
    common = ["--engine", small_bundle, "--backend", "ort-cpu", "--gyro", log]

    assert run(*common, "-o", tmp_path / "a", inputs / "photo.png")[0] == 0
    expected = gyro_trajectory(read_gyro_log(log), 0.0, float(times[-1]))
    np.testing.assert_allclose(poses_written(tmp_path / "a" / "photo"), expected, rtol=0, atol=1e-9)
    # The same motion logged by a gyroscope whose y points up and z backwards (an Android phone's frame).
    phone = tmp_path / "phone.csv"
    np.savetxt(phone, np.column_stack([times, rates * [1, -1, -1]]), delimiter=",")
    assert run(*common[:-1], phone, "--gyro-axes", "x,-y,-z", "-o", tmp_path / "phone", inputs / "photo.png")[0] == 0
    np.testing.assert_allclose(poses_written(tmp_path / "phone" / "photo"), expected, rtol=0, atol=1e-9)
    source = json.loads((tmp_path / "a" / "photo" / "trajectory.json").read_text())["trajectory_source"]
    assert source == f"gyroscope log {log}, exposure the whole log"

    code, _, stderr = run(*common, "--exposure", "0.1,0.03", "-o", tmp_path / "b", inputs / "clip.mp4")
    assert code == 0, stderr
    with (tmp_path / "b" / "clip" / "trajectories.csv").open() as file:
        rows = list(csv.DictReader(file))
    frames = {int(row["frame"]) for row in rows}
    assert frames == set(range(5))
    for frame in frames:  # 12 fps: frame k is exposed for 30 ms from 0.1 s + its timestamp, k/12 s
        written_poses = [
            [float(r[key]) for key in ("pitch_rad", "yaw_rad", "roll_rad")] for r in rows if int(r["frame"]) == frame
        ]
        start = 0.1 + frame / 12.0
        expected = gyro_trajectory(read_gyro_log(log), start, start + 0.03)
        np.testing.assert_allclose(written_poses, expected, rtol=0, atol=1e-9)

    # The camera's own per-frame metadata instead: exposure start and time of each frame, in the log's clock.
    starts, exposures = [0.31, 0.36, 0.45, 0.49, 0.58], [0.02, 0.01, 0.03, 0.02, 0.005]
    frame_times = tmp_path / "frames.csv"
    frame_times.write_text(
        "exposure_start_s,exposure_s\n" + "".join(f"{a},{b}\n" for a, b in zip(starts, exposures, strict=True))
    )
    code, _, stderr = run(*common, "--frame-times", frame_times, "-o", tmp_path / "c", inputs / "clip.mp4")
    assert code == 0, stderr
    with (tmp_path / "c" / "clip" / "trajectories.csv").open() as file:
        rows = list(csv.DictReader(file))
    for frame, (start, exposure) in enumerate(zip(starts, exposures, strict=True)):
        written_poses = [
            [float(r[key]) for key in ("pitch_rad", "yaw_rad", "roll_rad")] for r in rows if int(r["frame"]) == frame
        ]
        expected = gyro_trajectory(read_gyro_log(log), start, start + exposure)
        np.testing.assert_allclose(written_poses, expected, rtol=0, atol=1e-9)
    with pytest.raises(SystemExit):  # argparse: one or the other
        run(*common, "--frame-times", frame_times, "--exposure", "0,0.1", "-o", tmp_path / "d", inputs / "clip.mp4")


def test_known_motion_that_does_not_fit_is_refused(small_bundle, inputs, tmp_path):
    common = ["--engine", small_bundle, "--backend", "ort-cpu"]
    recorded = write_trajectory_file(tmp_path / "shake.txt", rows=40, seed=5)
    log = tmp_path / "gyro.csv"
    log.write_text("0,0,0.1,0\n0.5,0,0.1,0\n")

    # At the start, in one line, before anything is written: a bad file, an exposure without a log.
    (tmp_path / "bad.txt").write_text("1,2\n3,4\n")
    for arguments, message in [
        (["--trajectory", tmp_path / "bad.txt"], "bad.txt: expected at least 2 rows of 3 or 6"),
        (["--trajectory", tmp_path / "missing.json"], "missing.json: cannot read trajectory file"),
        (["--exposure", "0,0.1"], "--exposure goes with --gyro"),
        (["--gyro-axes", "x,-y,-z"], "--gyro-axes goes with --gyro"),
        (["--gyro", log, "--gyro-axes", "x,y,-z"], "axes 'x,y,-z' mirror the frame"),
    ]:
        code, _, stderr = run(*common, *arguments, "-o", tmp_path / "out", inputs / "photo.png")
        assert code == 2 and len(stderr.splitlines()) == 1 and message in stderr, stderr
        assert not (tmp_path / "out").exists()

    # Per source, and the batch goes on: a trajectory file for a video, a video without its exposure, a photo's
    # exposure outside the log.
    code, _, stderr = run(
        *common, "--trajectory", recorded, "-o", tmp_path / "a", inputs / "photo.png", inputs / "clip.mp4"
    )
    assert code == 1 and "a trajectory file gives one photo's motion; for a video give --gyro" in stderr
    assert (tmp_path / "a" / "photo" / "restored.png").is_file() and not (tmp_path / "a" / "clip").exists()
    code, _, stderr = run(*common, "--gyro", log, "-o", tmp_path / "b", inputs / "clip.mp4")
    assert code == 1 and "gyro.csv: a video needs --exposure START,DURATION" in stderr
    code, _, stderr = run(*common, "--gyro", log, "--exposure", "0.4,0.2", "-o", tmp_path / "c", inputs / "photo.png")
    assert code == 1 and "gyro.csv: the exposure 0.4 to 0.6 s runs outside the gyroscope log (0 to 0.5 s)" in stderr
    code, _, stderr = run(*common, "--gyro", log, "--exposure", "0,0.1", "-o", tmp_path / "d", "0")
    assert code == 1 and "camera 0: known motion needs a video file, whose frame times are known" in stderr


def test_a_rolling_shutter_is_restored_in_bands(small_bundle, tmp_path):
    times = np.arange(0.0, 0.5, 0.001)
    rates = np.stack([0.5 * np.sin(20 * times), 0.4 * np.cos(13 * times), 0.2 * times], axis=1)
    log = tmp_path / "gyro.csv"
    np.savetxt(log, np.column_stack([times, rates]), delimiter=",")
    photo = tmp_path / "tall.png"
    cv2.imwrite(str(photo), smooth_bgr8(128, 96))
    common = ["--engine", small_bundle, "--backend", "ort-cpu", "--gyro", log, "--exposure", "0.1,0.03"]
    code, _, stderr = run(*common, "--readout-time", "0.02", "--sequence", "-o", tmp_path / "out", photo)
    assert code == 0, stderr
    frames = [cv2.imread(str(tmp_path / "out" / "tall" / "frames" / f"frame_{i:02d}.png")) for i in (0, 24)]
    assert all(frame.shape == (128, 96, 3) for frame in frames)
    description = json.loads((tmp_path / "out" / "tall" / "trajectory.json").read_text())
    assert description["rolling_shutter"] is True and description["tiles"] == 4  # 128 rows: 4 bands of 32
    assert description["trajectory_source"].endswith("rolling shutter read out in 0.02 s")
    middle = gyro_trajectory(read_gyro_log(log), 0.11, 0.14)  # the middle row starts half a readout late
    np.testing.assert_allclose(poses_written(tmp_path / "out" / "tall"), middle, rtol=0, atol=1e-7)
    assert run(*common, "-o", tmp_path / "global", photo)[0] == 0
    assert json.loads((tmp_path / "global" / "tall" / "trajectory.json").read_text())["rolling_shutter"] is False
    # Read bottom to top: the middle row starts half a readout before the top row.
    assert run(*common, "--readout-time", "-0.02", "-o", tmp_path / "upwards", photo)[0] == 0
    upwards = gyro_trajectory(read_gyro_log(log), 0.09, 0.12)
    np.testing.assert_allclose(poses_written(tmp_path / "upwards" / "tall"), upwards, rtol=0, atol=1e-7)

    # A Gyroflow .gcsv log of the same motion states its readout (ms) in its header: taken unless overridden.
    gcsv = tmp_path / "clip.gcsv"
    header = "GYROFLOW IMU LOG\nversion,1.3\nid,test\norientation,XYZ\nframe_readout_time,20\ntscale,1\ngscale,1\n"
    np.savetxt(gcsv, np.column_stack([times, rates]), delimiter=",", header=header + "t,gx,gy,gz", comments="")
    from_log = ["--engine", small_bundle, "--backend", "ort-cpu", "--gyro", gcsv, "--exposure", "0.1,0.03"]
    assert run(*from_log, "-o", tmp_path / "gcsv", photo)[0] == 0
    described = json.loads((tmp_path / "gcsv" / "tall" / "trajectory.json").read_text())
    assert described["rolling_shutter"] is True and described["trajectory_source"].endswith("read out in 0.02 s")
    np.testing.assert_allclose(poses_written(tmp_path / "gcsv" / "tall"), middle, rtol=0, atol=1e-7)
    assert run(*from_log, "--readout-time", "0", "-o", tmp_path / "gcsv0", photo)[0] == 0
    assert json.loads((tmp_path / "gcsv0" / "tall" / "trajectory.json").read_text())["rolling_shutter"] is False
    code, _, stderr = run(*from_log, "--refine", "-o", tmp_path / "bad", photo)
    assert code == 2 and "(the log states one; --readout-time 0)" in stderr

    for arguments, message in [
        (["--readout-time", "nan"], "--readout-time must be a finite number of seconds"),
        (["--readout-time", "0.02", "--refine"], "--refine refines one trajectory"),
    ]:
        code, _, stderr = run(*common, *arguments, "-o", tmp_path / "bad", photo)
        assert code == 2 and message in stderr and len(stderr.splitlines()) == 1, stderr
    code, _, stderr = run("--engine", small_bundle, "--readout-time", "0.02", "-o", tmp_path / "bad", photo)
    assert code == 2 and "--readout-time goes with --gyro" in stderr
