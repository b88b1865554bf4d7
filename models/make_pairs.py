"""`python -m models.make_pairs`: an evaluation folder of (blurry, sharp) pairs made with the reference blur model.

python -m models.make_pairs --images a.png b.png --trajectories ../shared/data/trajectories/*.txt --out pairs/

Every image is paired with every trajectory (and every focal-length scale): a random crop of the image is the sharp
picture; the blurry one is that crop blurred by the PMBM (`models.pmbm`: the mean of the 25 pose warps), plus
Gaussian noise, quantised to 8 bits. The crop is blurred inside a larger crop whose margin covers the largest
displacement, so no reflected border leaks in. `DIR/pairs.json` lists the pairs as `python -m runtime.evaluate`
reads them: `name`, `blurry`, `sharp` (file names in DIR), `focal_length` (px) and `trajectory` (25x3 radians,
pitch/yaw/roll), plus where each pair came from. The same seed gives the same folder.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from models.geometry import displacement_field, intrinsics
from models.shake import N_POSES
from models.synthetic import blur_images
from models.trajectory import MIN_INPUT_SIDE
from runtime.core.motion import MotionError
from runtime.core.motion import read_trajectory as read_motion_file
from runtime.tools.pairs import PAIRS_FILE


class PairsError(ValueError):
    """An input that cannot be used or an output that cannot be written; one line naming the file."""


def read_trajectory(path: Path) -> np.ndarray:
    """`runtime.core.motion.read_trajectory` (here: the authors' format, 25 poses), its refusals as PairsErrors."""
    try:
        return read_motion_file(path, N_POSES)
    except MotionError as error:
        raise PairsError(str(error)) from None


def read_rgb8(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB (gray is repeated, 16 bits reduced to 8, EXIF orientation applied)."""
    if not path.is_file():
        raise PairsError(f"{path}: no such file")
    data = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if data is None:
        raise PairsError(f"{path}: not a readable image")
    return np.ascontiguousarray(data[..., ::-1])


def blur_margin(trajectory: np.ndarray, crop: int, focal_length: float) -> int:
    """Pixels around a `crop x crop` picture that its blur samples from: the largest displacement, rounded up, + 2."""
    poses = torch.as_tensor(trajectory, dtype=torch.float32)[None]
    camera = intrinsics(crop, crop, focal_length)
    largest = float(displacement_field(poses, camera, crop, crop).abs().max())
    return math.ceil(largest) + 2


def pmbm_blur(sharp: np.ndarray, trajectory: np.ndarray, focal_length: float) -> np.ndarray:
    """The reference blur of an HxWx3 float32 RGB image (principal point at its centre): HxWx3 float32."""
    return blur_images(np.ascontiguousarray(sharp)[None], np.asarray(trajectory)[None], np.array([focal_length]))[0]


def make_pair(
    image: np.ndarray, trajectory: np.ndarray, crop: int, noise: float, focal_scale: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float, tuple[int, int]]:
    """One pair from an HxWx3 uint8 RGB image: (sharp, blurry) `crop x crop` uint8 RGB, focal length, crop origin.

    The focal length is `focal_scale` times the crop side (1: the reference's default). The sharp crop is taken at
    a random place with room for the blur margin around it when the image has it (less margin otherwise).
    """
    height, width = image.shape[:2]
    if min(height, width) < crop:
        raise PairsError(f"image is {width}x{height}, smaller than the {crop} px crop")
    focal_length = focal_scale * crop
    margin = min(blur_margin(trajectory, crop, focal_length), (height - crop) // 2, (width - crop) // 2)
    side = crop + 2 * margin
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    around = image[top : top + side, left : left + side].astype(np.float32) / np.float32(255)
    # Same centre, same focal length: the large crop's homographies are the small crop's, shifted by the margin.
    blurred = pmbm_blur(around, trajectory, focal_length)[margin : margin + crop, margin : margin + crop]
    noisy = blurred + noise * rng.standard_normal(blurred.shape)
    blurry = np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)
    sharp = image[top + margin : top + margin + crop, left + margin : left + margin + crop]
    return np.ascontiguousarray(sharp), blurry, focal_length, (left + margin, top + margin)


def make_pairs(
    images: Sequence[Path],
    trajectories: Sequence[Path],
    out: Path,
    crop: int = 256,
    noise: float = 0.01,
    seed: int = 0,
    focal_length_scales: Sequence[float] = (1.0,),
    log: Callable[[str], object] = print,
) -> list[dict[str, Any]]:
    """Write every (image, trajectory, focal-length scale) pair and `pairs.json` into `out`; return the entries.

    Pair k draws its crop and noise from `numpy.random.default_rng([seed, k])`: the folder is a function of the
    arguments. `pairs.json` is written last, so a folder without it is unfinished.
    """
    _check(
        crop >= MIN_INPUT_SIDE, f"--crop must be at least {MIN_INPUT_SIDE} px (the nets' smallest input), got {crop}"
    )
    _check(math.isfinite(noise) and noise >= 0, f"--noise must be a finite sigma >= 0, got {noise}")
    _check(
        bool(focal_length_scales) and all(math.isfinite(s) and s > 0 for s in focal_length_scales),
        f"--focal-length-scale must be positive, got {list(focal_length_scales)}",
    )
    _check(bool(images) and bool(trajectories), "give at least one image and one trajectory file")
    pictures = {path: read_rgb8(path) for path in images}
    motions = {path: read_trajectory(path) for path in trajectories}
    jobs = [(image, motion, scale) for image in images for motion in trajectories for scale in focal_length_scales]
    names = [_name(image, motion, scale, len(focal_length_scales) > 1) for image, motion, scale in jobs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    _check(not duplicates, f"inputs share the pair name {', '.join(duplicates)}: rename one of them")

    entries: list[dict[str, Any]] = []
    for index, ((image, motion, scale), name) in enumerate(zip(jobs, names, strict=True)):
        try:
            sharp, blurry, focal_length, origin = make_pair(
                pictures[image], motions[motion], crop, noise, scale, np.random.default_rng([seed, index])
            )
        except PairsError as error:
            raise PairsError(f"{image}: {error}") from None
        _write(out / f"{name}_sharp.png", _png(sharp))
        _write(out / f"{name}_blurry.png", _png(blurry))
        entries.append(
            {
                "name": name,
                "blurry": f"{name}_blurry.png",
                "sharp": f"{name}_sharp.png",
                "focal_length": focal_length,
                "trajectory": np.asarray(motions[motion], dtype=np.float64).tolist(),
                "source_image": str(image),
                "source_trajectory": str(motion),
                "crop_origin_xy": list(origin),
                "noise_sigma": noise,
                "seed": [seed, index],
            }
        )
        log(f"[{index + 1}/{len(jobs)}] {name}: {crop}x{crop}, f = {focal_length:g} px")
    _write(out / PAIRS_FILE, (json.dumps(entries, indent=1) + "\n").encode())
    return entries


def _name(image: Path, trajectory: Path, scale: float, with_scale: bool) -> str:
    return f"{image.stem}_{trajectory.stem}" + (f"_f{scale:g}" if with_scale else "")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise PairsError(message)


def _png(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise PairsError(f"OpenCV cannot encode a {rgb.dtype} {rgb.shape} image as PNG")
    return bytes(encoded.tobytes())


def _write(path: Path, data: bytes) -> None:
    """Write atomically: a temporary file in the target folder, renamed into place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise PairsError(f"{path}: cannot write here ({error.strerror or error})") from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m models.make_pairs", description=__doc__.splitlines()[0])
    parse.add_argument("--images", type=Path, nargs="+", required=True, metavar="IMG", help="sharp source images")
    parse.add_argument(
        "--trajectories", type=Path, nargs="+", required=True, metavar="TXT", help="trajectory files, authors' format"
    )
    parse.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the pairs and pairs.json")
    parse.add_argument("--crop", type=int, default=256, help="side of the square crops in px (default 256)")
    parse.add_argument("--noise", type=float, default=0.01, help="Gaussian noise sigma on [0, 1] (default 0.01)")
    parse.add_argument("--seed", type=int, default=0, help="random seed (crops, noise); default 0")
    parse.add_argument(
        "--focal-length-scale",
        type=float,
        nargs="+",
        default=[1.0],
        metavar="S",
        help="focal length = S x crop side (default 1, the reference's); several: every pair once per value",
    )
    return parse


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        entries = make_pairs(
            args.images,
            args.trajectories,
            args.out,
            args.crop,
            args.noise,
            args.seed,
            args.focal_length_scale,
            log=lambda text: print(text, file=sys.stderr),
        )
    except PairsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(entries)} pairs in {args.out / PAIRS_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
