"""The `deblur` model of a Triton repository: one 8-bit RGB photo in, the restored photo and the camera shake out.

`python -m export.triton` copies this file unchanged to `REPO/deblur/1/model.py`, where Triton's Python backend
runs it and it calls the repository's `trajectory` and `restoration` models through Business Logic Scripting
(BLS). The bundle's values (n_positions, size limits, noise level, model names, batching) come from the
`parameters` of `deblur/config.pbtxt`, so the file is the same for every bundle.

It follows the runtime's `Deblurrer` step for step: RGB / 255 in float32, the reference camera (focal length the
longer side unless the request gives one, principal point at the centre, as `runtime.core.camera.intrinsics`),
the trajectory net at full resolution, one untiled restoration, and rounding back to 8 bits. Images larger than
the configured side are refused, not tiled: tiled restoration is the runtime's.

Only numpy and Triton's `triton_python_backend_utils` are imported: the file runs in Triton's Python stub
(Python 3.8 on JetPack 5), outside this project's environment. `triton_python_backend_utils` exists only inside
Triton, so it is imported where the BLS calls need it and the functions above `TritonPythonModel` run anywhere.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

import numpy as np

#: The graph inputs and outputs the pipeline feeds and reads, by model; the export checks the bundle has them.
TRAJECTORY_INPUTS = ("image", "focal_length")
TRAJECTORY_OUTPUT = "trajectory"
RESTORATION_INPUTS = ("blurry", "trajectory", "intrinsics", "sigma")
RESTORATION_OUTPUT = "restored"
#: The `deblur` model's own inputs and outputs.
IMAGE_INPUT = "image"
FOCAL_LENGTH_INPUT = "focal_length"
RESTORED_OUTPUT = "restored"
TRAJECTORY_RESULT = "trajectory"
#: The keys of `deblur/config.pbtxt`'s `parameters` this model reads.
PARAMETERS = (
    "trajectory_model",
    "restoration_model",
    "batched",
    "n_positions",
    "min_side",
    "max_side",
    "max_height",
    "max_width",
    "sigma",
)


class RequestError(ValueError):
    """A request this model cannot serve; the message says what is wrong with it."""


class ModelCallError(RuntimeError):
    """A model called through BLS answered with an error; the message names the model."""


class Settings(NamedTuple):
    """What the model needs to know about the bundle and the repository, from its configuration's parameters.

    `batched`: the graph models take a leading batch axis (max_batch_size > 0), so their per-image scalars
    (focal length, sigma) travel as `[1, 1]` rather than `[1]`. `max_height`/`max_width` are the TensorRT
    engines' largest input (0: no bound beyond `max_side`).
    """

    trajectory_model: str
    restoration_model: str
    batched: bool
    n_positions: int
    min_side: int
    max_side: int
    max_height: int
    max_width: int
    sigma: float


def settings_from_config(config: dict[str, Any]) -> Settings:
    """The settings in a model configuration as Triton hands it to `initialize` (parsed from JSON)."""
    parameters = config.get("parameters", {})
    absent = [key for key in PARAMETERS if key not in parameters]
    if absent:
        raise ValueError(f"deblur/config.pbtxt: parameters lack {', '.join(absent)}")
    value = {key: str(parameters[key]["string_value"]) for key in PARAMETERS}
    return Settings(
        trajectory_model=value["trajectory_model"],
        restoration_model=value["restoration_model"],
        batched=value["batched"] == "true",
        n_positions=int(value["n_positions"]),
        min_side=int(value["min_side"]),
        max_side=int(value["max_side"]),
        max_height=int(value["max_height"]),
        max_width=int(value["max_width"]),
        sigma=float(value["sigma"]),
    )


def check_image(image: np.ndarray, settings: Settings) -> None:
    """Refuse an image that is not HxWx3 uint8 or whose size lies outside what the models take."""
    if image.dtype != np.uint8:
        raise RequestError(f"image must be UINT8 (8-bit RGB), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise RequestError(f"image must be HxWx3 RGB, got shape {list(image.shape)}")
    height, width = image.shape[:2]
    if min(height, width) < settings.min_side:
        raise RequestError(f"image is {width}x{height}; the bundle needs at least {settings.min_side} px on each side")
    if max(height, width) > settings.max_side:
        raise RequestError(
            f"image is {width}x{height}; this model restores images of at most {settings.max_side} px on the "
            "longer side in one piece: resize it, or restore it in tiles with the runtime's Deblurrer"
        )
    if (settings.max_height and height > settings.max_height) or (settings.max_width and width > settings.max_width):
        raise RequestError(
            f"image is {width}x{height}; the TensorRT engines served take at most "
            f"{settings.max_width or width}x{settings.max_height or height}"
        )


def focal_length(value: np.ndarray | None, height: int, width: int) -> float:
    """The focal length in pixels: the request's, else the longer side (the reference's default)."""
    if value is None:
        return float(max(height, width))
    if value.size != 1:
        raise RequestError(f"focal_length must hold one value (pixels), got shape {list(value.shape)}")
    if not np.issubdtype(value.dtype, np.floating):
        raise RequestError(f"focal_length must be FP32, got {value.dtype}")
    focal = float(value.reshape(-1)[0])
    if not (math.isfinite(focal) and focal > 0):
        raise RequestError(f"focal_length must be a positive number of pixels, got {focal}")
    return focal


def intrinsics(height: int, width: int, focal: float) -> np.ndarray:
    """The camera `[[f, 0, W/2], [0, f, H/2], [0, 0, 1]]` float64, as `runtime.core.camera.intrinsics`."""
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]], dtype=np.float64)


def normalise(image: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 RGB image as the graphs' `(1, 3, H, W)` float32 in [0, 1] (RGB / 255)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)


def to_uint8(restored: np.ndarray) -> np.ndarray:
    """The restoration's `(1, 3, H, W)` float32 as HxWx3 uint8 RGB, rounded and clipped as the Deblurrer does."""
    pixels = np.clip(restored[0].transpose(1, 2, 0) * np.float32(255) + np.float32(0.5), 0, 255)
    return np.ascontiguousarray(pixels.astype(np.uint8))


def per_image(value: float, batched: bool) -> np.ndarray:
    """A per-image scalar input (focal length, sigma) for one image: `[1, 1]` to a batching model, else `[1]`."""
    return np.full((1, 1) if batched else (1,), value, dtype=np.float32)


def _backend_utils() -> Any:
    """Triton's `triton_python_backend_utils`, which exists only inside Triton's Python backend."""
    import triton_python_backend_utils

    return triton_python_backend_utils


class TritonPythonModel:
    """Deblur one image per request: the trajectory model, then the restoration model, through BLS."""

    def initialize(self, args: dict[str, str]) -> None:
        self.settings = settings_from_config(json.loads(args["model_config"]))

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request; a bad request gets an error response, the others are served."""
        return [self._respond(request) for request in requests]

    def _respond(self, request: Any) -> Any:
        pb_utils = _backend_utils()
        try:
            image = _input(pb_utils, request, IMAGE_INPUT)
            if image is None:
                raise RequestError(f"the request has no {IMAGE_INPUT} input")
            restored, trajectory = self.deblur(image, _input(pb_utils, request, FOCAL_LENGTH_INPUT))
        except RequestError as error:
            return pb_utils.InferenceResponse(output_tensors=[], error=_error(pb_utils, str(error), "INVALID_ARG"))
        except ModelCallError as error:
            return pb_utils.InferenceResponse(output_tensors=[], error=_error(pb_utils, str(error), "INTERNAL"))
        outputs = [pb_utils.Tensor(RESTORED_OUTPUT, restored), pb_utils.Tensor(TRAJECTORY_RESULT, trajectory)]
        return pb_utils.InferenceResponse(output_tensors=outputs)

    def deblur(self, image: np.ndarray, focal_input: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The restored HxWx3 uint8 RGB image and the `(P, 3)` float32 trajectory of one checked request."""
        settings = self.settings
        check_image(image, settings)
        height, width = image.shape[:2]
        focal = focal_length(focal_input, height, width)
        blurry = normalise(image)
        poses = self._infer(
            settings.trajectory_model,
            {"image": blurry, "focal_length": per_image(focal, settings.batched)},
            TRAJECTORY_OUTPUT,
        )
        camera = intrinsics(height, width, focal).astype(np.float32)[None]
        restored = self._infer(
            settings.restoration_model,
            {
                "blurry": blurry,
                "trajectory": poses,
                "intrinsics": camera,
                "sigma": per_image(settings.sigma, settings.batched),
            },
            RESTORATION_OUTPUT,
        )
        return to_uint8(restored), np.ascontiguousarray(poses.reshape(settings.n_positions, 3), dtype=np.float32)

    def _infer(self, model: str, inputs: dict[str, np.ndarray], output: str) -> np.ndarray:
        """One output of another model of the repository, run through BLS and returned in host memory."""
        pb_utils = _backend_utils()
        request = pb_utils.InferenceRequest(
            model_name=model,
            requested_output_names=[output],
            inputs=[pb_utils.Tensor(name, value) for name, value in inputs.items()],
            preferred_memory=pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0),
        )
        response = request.exec()
        if response.has_error():
            raise ModelCallError(f"model {model}: {response.error().message()}")
        return pb_utils.get_output_tensor_by_name(response, output).as_numpy()


def _input(pb_utils: Any, request: Any, name: str) -> np.ndarray | None:
    """A request's input as an array, or None when the request does not carry it (an optional input)."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _error(pb_utils: Any, message: str, code: str) -> Any:
    """A `TritonError` with its code (INVALID_ARG, INTERNAL) where this Triton has codes (23.09 and later)."""
    value = getattr(pb_utils.TritonError, code, None)
    return pb_utils.TritonError(message) if value is None else pb_utils.TritonError(message, value)
