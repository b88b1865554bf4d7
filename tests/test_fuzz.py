"""Seeded mutation fuzzing of the readers of files a user hands the runtime: trajectory files (JSON, CSV, the authors'
recordings), gyroscope logs (CSV, Gyroflow .gcsv), camera presets (YAML), Gyroflow lens profiles (JSON) and
pairs.json. Valid files are truncated, have bytes flipped, numbers replaced by extremes (1e30, nan, -inf, integers
beyond floats), nesting deepened, parts repeated, tokens spliced in and, for the JSON and YAML ones, values swapped
for values of the wrong kind; then read. Every input either loads or is refused with the reader's own error in one
line; nothing else escapes, what loads lies within the limits of `runtime.core.limits`, and no file outside the
test's tmp folder is opened for writing, made, moved or removed. The image reader and the bundle loader are fuzzed
beside their own tests.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from runtime.core.limits import FOCAL_LENGTH_PX, GYRO_RATE_RAD_S, ROTATION_RAD
from runtime.core.motion import GyroLog, MotionError, read_gyro_log, read_trajectory
from runtime.io.presets import CameraPreset, PresetError, read_camera_preset
from runtime.tools.pairs import Pair, PairsError, read_pairs

#: Generated inputs per reader, and the wall-clock time all of one reader's may take (they take a few seconds).
INPUTS = 2000
SECONDS_PER_READER = 20.0

# --- what the readers may do to the file system ---------------------------------------------------------------

#: Audit events that change the file system, and which of their arguments are paths.
CHANGING_EVENTS = {
    "os.remove": (0,),
    "os.rename": (0, 1),
    "os.mkdir": (0,),
    "os.rmdir": (0,),
    "os.symlink": (0, 1),
    "os.link": (0, 1),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "shutil.rmtree": (0,),
    "shutil.copyfile": (1,),
    "shutil.move": (0, 1),
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
#: While a fuzz loop runs: the paths its readers changed or opened for writing.
_watched: list[list[str]] = []


def _audit(event: str, arguments: tuple) -> None:
    """Note every file-system change while a loop runs (an audit hook stays for the process: it only notes)."""
    if not _watched:
        return
    if event == "open":
        path, mode, flags = arguments
        writes = any(letter in mode for letter in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
        if writes and isinstance(path, str | bytes | os.PathLike):
            _watched[-1].append(os.fsdecode(path))
    elif event in CHANGING_EVENTS:
        _watched[-1].extend(
            os.fsdecode(arguments[index])
            for index in CHANGING_EVENTS[event]
            if index < len(arguments) and isinstance(arguments[index], str | bytes | os.PathLike)
        )


sys.addaudithook(_audit)


class _Watch:
    """Collects the paths changed inside a `with` block (`changed`)."""

    def __enter__(self) -> _Watch:
        self.changed: list[str] = []
        _watched.append(self.changed)
        return self

    def __exit__(self, *exc: object) -> None:
        _watched.remove(self.changed)


def test_the_watch_sees_writes_and_removals(tmp_path):
    with _Watch() as watch:
        (tmp_path / "a").write_text("x")
        (tmp_path / "a").rename(tmp_path / "b")
        (tmp_path / "b").unlink()
        (tmp_path / "b").exists()
        (tmp_path / "c").touch()
    assert [Path(path).name for path in watch.changed] == ["a", "a", "b", "b", "c", "c"]


# --- mutations -------------------------------------------------------------------------------------------------

NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
EXTREMES = [
    b"1e30",
    b"-1e30",
    b"1e308",
    b"1e400",
    b"-1e400",
    b"nan",
    b"NaN",
    b"-inf",
    b"Infinity",
    b".nan",
    b"-.inf",
    b"-0",
    b"0",
    b"4.9e-324",
    b"1" + b"0" * 400,
    b"1" + b"0" * 5000,
    b"99999999999999999999999",
    b"0x1F",
    b"1_000",
    b"true",
    b"null",
    b'""',
    b"[]",
    b"{}",
    b"-",
    b"1e",
]
TOKENS = [
    b"\n",
    b"\r\n",
    b"\r",
    b",",
    b",,",
    b'"',
    b"'",
    b"#",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\\",
    b"\t",
    b":",
    b"- ",
    b"---\n",
    b"&a ",
    b"*a",
    b"!!python/object/apply:os.system ['true']",
    b"!!binary x",
    b"%YAML 1.1\n",
    b"\x85",
    b"\xe2\x80\xa8",
    b"t,gx,gy,gz\n",
    b"GYROFLOW IMU LOG\n",
    b"pitch_rad,yaw_rad,roll_rad\n",
    b"../",
    b"/etc/passwd",
]
#: Values of the wrong kind or size for a JSON or YAML document's places.
ODD_VALUES: list[object] = [
    None,
    True,
    0,
    -1,
    1e30,
    -1e30,
    float("nan"),
    float("inf"),
    10**400,
    "",
    "x",
    "../x.png",
    "/etc/passwd",
    "a/b.png",
    "..",
    ".",
    "\x00",
    "1e30",
    [],
    {},
    [1e30, 0, 0],
    [[0, 0, 0]] * 24,
    {"w": 1e30, "h": -1},
    [[1e30, 0, 1e30], [0, 1e30, 1e30], [0, 0, 1]],
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
]


def _truncate(data: bytes, rng: random.Random, limit: int) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _flip(data: bytes, rng: random.Random, limit: int) -> bytes:
    changed = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if changed:
            changed[rng.randrange(len(changed))] = rng.randrange(256)
    return bytes(changed)


def _extreme_numbers(data: bytes, rng: random.Random, limit: int) -> bytes:
    numbers = list(NUMBER.finditer(data))
    if not numbers:
        return data
    chosen = sorted(rng.sample(numbers, min(len(numbers), rng.randint(1, 3))), key=lambda match: -match.start())
    for match in chosen:
        data = data[: match.start()] + rng.choice(EXTREMES) + data[match.end() :]
    return data


def _nest(data: bytes, rng: random.Random, limit: int) -> bytes:
    opening, closing = rng.choice([(b"[", b"]"), (b'{"a":', b"}"), (b"- ", b""), (b"{a: ", b"}")])
    depth = min(rng.choice([33, 40, 200, 999, 5000, 100_000]), max(33, limit // len(opening)))
    at = rng.randrange(len(data) + 1)
    middle = opening * depth + (closing * depth if rng.random() < 0.7 else b"")
    return data[:at] + middle + data[at:]


def _repeat(data: bytes, rng: random.Random, limit: int) -> bytes:
    if not data:
        return data
    start = rng.randrange(len(data))
    part = data[start : start + rng.randint(1, 200)]
    copies = rng.randint(2, max(2, limit // len(part)))
    return data[:start] + part * copies + data[start:]


def _splice(data: bytes, rng: random.Random, limit: int) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.choice(TOKENS) + data[at:]


def _delete(data: bytes, rng: random.Random, limit: int) -> bytes:
    start = rng.randrange(len(data) + 1)
    return data[:start] + data[start + rng.randint(1, 64) :]


def _shuffle_lines(data: bytes, rng: random.Random, limit: int) -> bytes:
    lines = data.split(b"\n")
    index = rng.randrange(len(lines))
    if rng.random() < 0.5:
        lines.insert(rng.randrange(len(lines) + 1), lines[index])
    else:
        other = rng.randrange(len(lines))
        lines[index], lines[other] = lines[other], lines[index]
    return b"\n".join(lines)


BYTE_MUTATIONS = [_truncate, _flip, _extreme_numbers, _nest, _repeat, _splice, _delete, _shuffle_lines]


def _places(document: object, path: tuple = ()) -> Iterator[tuple]:
    """Every place (a path of keys and indices) in a parsed JSON or YAML document."""
    yield path
    if isinstance(document, dict):
        for key, value in document.items():
            yield from _places(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _places(value, (*path, index))


def _replaced(document: object, path: tuple, value: object) -> object:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {**document, head: _replaced(document[head], rest, value)}
    copy = list(document)  # type: ignore[call-overload]
    copy[head] = _replaced(copy[head], rest, value)
    return copy


def _odd_value(document: object, rng: random.Random) -> object:
    """The document with one place holding an odd value, or its key dropped."""
    path = rng.choice(list(_places(document)))
    if path and rng.random() < 0.15:
        parent_path, last = path[:-1], path[-1]
        parent = document
        for key in parent_path:
            parent = parent[key]  # type: ignore[index]
        if isinstance(parent, dict):
            return _replaced(document, parent_path, {key: value for key, value in parent.items() if key != last})
    return _replaced(document, path, rng.choice(ODD_VALUES))


# --- what a reader may give ----------------------------------------------------------------------------------


def _within(values: object, limit) -> bool:
    array = np.asarray(values, dtype=np.float64)
    return bool(np.all((array >= limit.low) & (array <= limit.high)))


def _trajectory_is_usable(poses: object, folder: Path) -> bool:
    return isinstance(poses, np.ndarray) and poses.shape == (25, 3) and _within(poses, ROTATION_RAD)


def _log_is_usable(log: object, folder: Path) -> bool:
    return (
        isinstance(log, GyroLog)
        and log.times_s.shape == (len(log.angular_velocity),)
        and len(log.times_s) >= 2
        and bool(np.all(np.isfinite(log.times_s)) and np.all(np.diff(log.times_s) > 0))
        and _within(log.angular_velocity, GYRO_RATE_RAD_S)
    )


def _preset_is_usable(preset: object, folder: Path) -> bool:
    if not (isinstance(preset, CameraPreset) and _within(preset.focal_length_px, FOCAL_LENGTH_PX)):
        return False
    lens = preset.lens
    return lens is None or (
        _within(lens.focal_lengths_px, FOCAL_LENGTH_PX)
        and 0 <= lens.principal_point_px[0] <= lens.width_px
        and 0 <= lens.principal_point_px[1] <= lens.height_px
        and bool(np.all(np.isfinite(lens.coefficients)))
    )


def _pairs_are_usable(pairs: object, folder: Path) -> bool:
    inside = folder.resolve()
    return isinstance(pairs, list) and all(
        isinstance(pair, Pair)
        and pair.blurry.resolve().parent == inside
        and pair.sharp.resolve().parent == inside
        and _within(pair.focal_length, FOCAL_LENGTH_PX)
        and _within(pair.trajectory, ROTATION_RAD)
        for pair in pairs
    )


@dataclass(frozen=True)
class Case:
    """A reader, the valid files it is fuzzed from, its own error, whether what it gives is usable (within the
    limits), how it writes a structured mutation (None: bytes only), and how far repeats and nesting may grow a
    file (the YAML parser is pure Python, and slow)."""

    name: str
    seeds: tuple[bytes, ...]
    read: Callable[[Path], object]
    file_name: str
    error: type[Exception]
    usable: Callable[[object, Path], bool]
    dump: Callable[[object], bytes] | None = None
    load: Callable[[bytes], object] | None = None
    repeat_limit: int = 200_000

    def inputs(self, rng: random.Random) -> Iterator[bytes]:
        """`INPUTS` mutated files, then a few fixed ones (empty, binary, beyond the size and depth limits)."""
        documents = [self.load(seed) for seed in self.seeds] if self.load else []
        for _ in range(INPUTS):
            seed_index = rng.randrange(len(self.seeds))
            if self.dump is not None and rng.random() < 0.3:
                data = self.dump(_odd_value(documents[seed_index], rng))
            else:
                data = self.seeds[seed_index]
            for mutation in rng.choices(BYTE_MUTATIONS, k=rng.randint(1, 3)):
                data = mutation(data, rng, self.repeat_limit)
            yield data
        yield from (b"", b"\x00" * 64, bytes(range(256)), b"[" * 100_000, b" " * (16 * 2**20 + 1))


def _json(document: object) -> bytes:
    return json.dumps(document).encode()


def _yaml(document: object) -> bytes:
    return yaml.safe_dump(document).encode()


def _trajectory_seeds() -> tuple[bytes, ...]:
    poses = np.round(np.random.default_rng(0).normal(0.0, 0.01, (25, 3)), 6)
    as_json = _json({"focal_length_px": 512.0, "poses": poses.tolist()})
    rows = [f"{i},{p},{y},{r},512.0,256,256" for i, (p, y, r) in enumerate(poses.tolist())]
    as_csv = "\n".join(["pose,pitch_rad,yaw_rad,roll_rad,focal_length_px,width_px,height_px", *rows]).encode()
    recorded = "\n".join(f"0,0,0,{p},{y},{r}" for p, y, r in np.cumsum(poses, axis=0).tolist()).encode()
    return as_json, as_csv, recorded


def _gyro_seeds() -> tuple[bytes, bytes]:
    rows = [f"{0.001 * i:.3f},{0.1 * np.sin(i / 7):.5f},0.2,-0.3" for i in range(60)]
    gcsv_rows = [f"{i},{200 + i},400,600,-1137,-15689,-2986" for i in range(60)]
    gcsv_header = (
        "GYROFLOW IMU LOG\nversion,1.3\nid,test_logger\norientation,YxZ\nframe_readout_time,15.23\n"
        "frame_readout_direction,0\ntscale,0.001\ngscale,0.0005\nascale,0.00048828125\nt,gx,gy,gz,ax,ay,az\n"
    )
    return "\n".join(["time_s,x,y,z", *rows]).encode(), (gcsv_header + "\n".join(gcsv_rows)).encode()


PRESET = {
    "focal_length_px": 1400,
    "width_px": 3840,
    "height_px": 2160,
    "lens": {"model": "fisheye", "distortion": [0.05, -0.02, 0.01, -0.002], "principal_point_px": [1915, 1083]},
}
PROFILE = {
    "name": "made-up action camera",
    "calib_dimension": {"w": 3840, "h": 2160},
    "fisheye_params": {
        "RMS_error": 0.9,
        "camera_matrix": [[2150.0, 0.0, 1921.0], [0.0, 2146.0, 1065.0], [0.0, 0.0, 1.0]],
        "distortion_coeffs": [-0.03, 0.008, -0.017, 0.014],
        "radial_distortion_limit": None,
    },
    "distortion_model": None,
    "input_horizontal_stretch": 1.0,
    "input_vertical_stretch": 1.0,
}


def _pairs_seed() -> bytes:
    trajectory = np.round(np.random.default_rng(1).normal(0.0, 0.01, (25, 3)), 6).tolist()
    entries = [
        {"name": name, "blurry": f"{name}_blurry.png", "sharp": f"{name}_sharp.png", "focal_length": 96.0}
        for name in ("scene_drift", "scene_wobble")
    ]
    return _json([{**entry, "trajectory": trajectory} for entry in entries])


def _read_pairs(path: Path) -> object:
    return read_pairs(path.parent)


CASES = [
    Case(
        "trajectory JSON",
        _trajectory_seeds()[:1],
        read_trajectory,
        "trajectory.json",
        MotionError,
        _trajectory_is_usable,
        _json,
        json.loads,
    ),
    Case(
        "trajectory CSV", _trajectory_seeds()[1:], read_trajectory, "trajectory.csv", MotionError, _trajectory_is_usable
    ),
    Case("gyroscope CSV", _gyro_seeds()[:1], read_gyro_log, "gyro.csv", MotionError, _log_is_usable),
    Case("gyroscope .gcsv", _gyro_seeds()[1:], read_gyro_log, "clip.gcsv", MotionError, _log_is_usable),
    Case(
        "camera preset YAML",
        (_yaml(PRESET),),
        read_camera_preset,
        "camera.yaml",
        PresetError,
        _preset_is_usable,
        _yaml,
        yaml.safe_load,
        repeat_limit=8_000,
    ),
    Case(
        "Gyroflow profile",
        (_json(PROFILE),),
        read_camera_preset,
        "camera.json",
        PresetError,
        _preset_is_usable,
        _json,
        json.loads,
    ),
    Case("pairs.json", (_pairs_seed(),), _read_pairs, "pairs.json", PairsError, _pairs_are_usable, _json, json.loads),
]


def _overwrite(path: Path, data: bytes) -> None:
    """Replace the file's bytes in place: truncating on open costs ext4 a flush each time (3 ms, not 0.02)."""
    with path.open("r+b") as file:
        file.write(data)
        file.truncate()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_any_input_loads_or_is_refused_in_one_line_by_the_readers_own_error(tmp_path, case):
    folder = tmp_path / "fuzz"
    folder.mkdir()
    for name in ("scene_drift", "scene_wobble"):  # the images pairs.json names (never read by the reader)
        for kind in ("blurry", "sharp"):
            (folder / f"{name}_{kind}.png").write_bytes(b"")
    path = folder / case.file_name
    path.touch()
    rng = random.Random(f"{case.name} 20240601")
    outcomes = {"loaded": 0, "refused": 0}
    started = time.perf_counter()
    with _Watch() as watch:
        for number, data in enumerate(case.inputs(rng)):
            _overwrite(path, data)
            try:
                loaded = case.read(path)
            except case.error as error:
                message = str(error)
                assert len(message.splitlines()) == 1 and message.strip(), f"input {number}: {message!r:.300}"
                outcomes["refused"] += 1
            except Exception as error:  # noqa: BLE001 - anything else is the finding
                pytest.fail(f"input {number} ({data[:200]!r}...) raised {type(error).__name__}: {error!s:.300}")
            else:
                assert case.usable(loaded, folder), f"input {number} ({data[:200]!r}...) gave {loaded!r:.300}"
                outcomes["loaded"] += 1
    elapsed = time.perf_counter() - started
    outside = [changed for changed in watch.changed if not Path(changed).resolve().is_relative_to(tmp_path.resolve())]
    assert outside == []
    assert sum(outcomes.values()) >= INPUTS
    assert outcomes["loaded"] > 0 and outcomes["refused"] > INPUTS // 4, outcomes  # both sides were reached
    assert elapsed < SECONDS_PER_READER, f"{case.name}: {elapsed:.1f} s"
