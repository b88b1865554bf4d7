"""Native TensorRT backend: run the engines built into a bundle (`python -m export.tensorrt`) with cuda-python.

TensorRT and cuda-python are imported inside functions, so this module imports (and reports itself
unavailable) on machines without them. The runner uses only the name-based I/O API that TensorRT 8.5 through 11
share (`num_io_tensors`, `set_input_shape`, `set_tensor_address`, `execute_async_v3`); the binding-index API,
removed in 10, is never touched. Engines are checked against their manifest record before TensorRT sees them:
one built by another TensorRT release, on another GPU or from another graph is refused with a rebuild hint, and
one whose bytes differ from the sha256 in the manifest's `files` table is refused before it is deserialized.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.core import engines
from runtime.core.backends.base import Backend, BackendError
from runtime.core.bundle import MANIFEST, Bundle, BundleError, first_line

if TYPE_CHECKING:
    import tensorrt as trt

#: Device buffers are allocated in multiples of this (bytes), so small shape changes reuse them.
_ALIGNMENT = 256
_LOGGER: trt.Logger | None = None


def require_tensorrt() -> None:
    """Return when `import tensorrt` gives the real TensorRT; else BackendError saying why it cannot be used.

    Callers then `import tensorrt as trt` themselves, so mypy checks every call against the TensorRT stubs.
    """
    if importlib.util.find_spec("tensorrt") is None:
        raise BackendError("TensorRT is not installed (pip install tensorrt; on Jetson use JetPack's TensorRT)")
    try:
        module = importlib.import_module("tensorrt")
    except (ImportError, OSError) as error:  # OSError: libnvinfer missing or of the wrong CUDA major
        raise BackendError(f"TensorRT cannot be imported ({str(error).splitlines()[0]})") from None
    if not hasattr(module, "Builder"):  # `tensorrt-stubs` alone leaves an empty namespace package
        raise BackendError("TensorRT is not installed (only its type stubs are)")


def import_cudart() -> Any:
    """cuda-python's runtime API (`cuda.bindings.runtime`, or `cuda.cudart` before cuda-python 12.6)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise BackendError("cuda-python is not installed (pip install cuda-python, major version = your CUDA major)")


def cuda_call(cudart: Any, function: str, *args: Any) -> Any:
    """Call `cudart.<function>(*args)` and check its error code: its result without the code, else BackendError."""
    result = getattr(cudart, function)(*args)
    error, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if error != cudart.cudaError_t.cudaSuccess:
        raise BackendError(f"{function} failed: {getattr(error, 'name', error)}")
    return values[0] if len(values) == 1 else values


def logger() -> trt.Logger:
    """The process-wide TensorRT logger (warnings and errors only)."""
    global _LOGGER
    if _LOGGER is None:
        require_tensorrt()
        import tensorrt as trt

        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def current_machine() -> engines.Machine:
    """TensorRT version, name and compute capability of the current CUDA device."""
    require_tensorrt()
    import tensorrt as trt

    cudart = import_cudart()
    device = cuda_call(cudart, "cudaGetDevice")
    properties = cuda_call(cudart, "cudaGetDeviceProperties", device)
    name = properties.name
    name = name.decode(errors="replace") if isinstance(name, bytes | bytearray) else str(name)
    return engines.Machine(
        tensorrt_version=str(trt.__version__),
        gpu_name=name.split("\x00", 1)[0].strip(),
        compute_capability=f"{properties.major}.{properties.minor}",
    )


def unavailable_reason() -> str | None:
    """None when TensorRT, cuda-python and a CUDA device are all present; else what is missing."""
    try:
        require_tensorrt()
        cudart = import_cudart()
        count = cuda_call(cudart, "cudaGetDeviceCount")
    except BackendError as error:
        return str(error)
    if count < 1:
        return "no CUDA device"
    return None


class TensorRTRunner:
    """One engine, its execution context and CUDA stream, and device buffers that grow but are reused."""

    backend = "tensorrt"

    def __init__(
        self,
        trt_runtime: trt.Runtime,
        engine: trt.ICudaEngine,
        record: engines.EngineRecord,
        graph_inputs: list[dict[str, Any]],
        bundle: str,
    ) -> None:
        require_tensorrt()
        import tensorrt as trt

        self._cudart = import_cudart()
        self._runtime: trt.Runtime | None = trt_runtime
        self._engine: trt.ICudaEngine | None = engine
        self._record = record
        self._graph_inputs = graph_inputs
        self._bundle = bundle
        names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
        modes = {name: engine.get_tensor_mode(name) for name in names}
        self.input_names = tuple(name for name in names if modes[name] == trt.TensorIOMode.INPUT)
        self.output_names = tuple(name for name in names if modes[name] == trt.TensorIOMode.OUTPUT)
        self._dtypes = {name: _numpy_dtype(engine.get_tensor_dtype(name)) for name in names}
        context = engine.create_execution_context()
        if context is None:
            raise BackendError(f"{bundle}/{record.file}: TensorRT could not create an execution context")
        self._context: trt.IExecutionContext | None = context
        self._stream: Any = cuda_call(self._cudart, "cudaStreamCreate")
        #: name -> (device pointer, allocated bytes)
        self._buffers: dict[str, tuple[int, int]] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}

    @property
    def capacity(self) -> dict[str, int]:
        """Allocated device bytes per I/O tensor (to see reuse at work)."""
        return {name: size for name, (_, size) in self._buffers.items()}

    def set_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Set the input shapes, grow device buffers that are too small, bind every I/O tensor's address."""
        context = self._live_context()
        wanted = {name: tuple(int(dim) for dim in shapes[name]) for name in self.input_names if name in shapes}
        if wanted == self._shapes:
            return
        absent = [name for name in self.input_names if name not in wanted]
        if absent:
            raise BackendError(f"{self._record.file}: no shape given for input {', '.join(absent)}")
        try:
            sizes = engines.axis_sizes(self._graph_inputs, wanted)
        except ValueError as error:
            raise BackendError(f"{self._bundle}/{self._record.file}: {error}") from None
        reason = engines.outside_reason(self._record, sizes, self._bundle)
        if reason is not None:
            raise BackendError(reason)
        for name, shape in wanted.items():
            if not context.set_input_shape(name, shape):
                raise BackendError(f"{self._record.file}: TensorRT refused shape {shape} for input {name}")
        self._shapes = {}  # invalid until every buffer is bound
        for name in (*self.input_names, *self.output_names):
            shape = wanted[name] if name in wanted else _dims(context.get_tensor_shape(name))
            if any(dim < 0 for dim in shape):
                raise BackendError(f"{self._record.file}: TensorRT left output {name} with shape {shape}")
            pointer = self._buffer(name, math.prod(shape) * self._dtypes[name].itemsize)
            if not context.set_tensor_address(name, pointer):
                raise BackendError(f"{self._record.file}: TensorRT refused the device address of {name}")
        self._shapes = wanted

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs to the device, execute on the stream, copy outputs into fresh arrays, synchronise."""
        context = self._live_context()
        self.set_shapes({name: tuple(value.shape) for name, value in inputs.items()})
        cudart = self._cudart
        to_device, to_host = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        staged = []  # host arrays must outlive the asynchronous copies
        for name in self.input_names:
            host = np.ascontiguousarray(inputs[name], dtype=self._dtypes[name])
            staged.append(host)
            pointer = self._buffers[name][0]
            cuda_call(cudart, "cudaMemcpyAsync", pointer, host.ctypes.data, host.nbytes, to_device, self._stream)
        if not context.execute_async_v3(int(self._stream)):
            raise BackendError(f"{self._record.file}: TensorRT execution failed (see the TensorRT log)")
        outputs = {}
        for name in self.output_names:
            host = np.empty(_dims(context.get_tensor_shape(name)), dtype=self._dtypes[name])
            pointer = self._buffers[name][0]
            cuda_call(cudart, "cudaMemcpyAsync", host.ctypes.data, pointer, host.nbytes, to_host, self._stream)
            outputs[name] = host
        cuda_call(cudart, "cudaStreamSynchronize", self._stream)
        del staged
        return outputs

    def close(self) -> None:
        """Free device buffers and the stream, then the context, engine and runtime (in that order). Idempotent."""
        if self._context is None:
            return
        calls = [("cudaStreamSynchronize", self._stream)]
        calls += [("cudaFree", pointer) for pointer, _ in self._buffers.values()]
        calls.append(("cudaStreamDestroy", self._stream))
        self._buffers, self._shapes = {}, {}
        errors = []
        for function, argument in calls:  # release everything, then report the first failure
            try:
                cuda_call(self._cudart, function, argument)
            except BackendError as error:
                errors.append(error)
        self._context = None  # the context goes before the engine, the engine before its runtime
        self._engine = None
        self._runtime = None
        if errors:
            raise errors[0]

    def _live_context(self) -> trt.IExecutionContext:
        if self._context is None:
            raise BackendError("tensorrt runner used after close()")
        return self._context

    def _buffer(self, name: str, needed: int) -> int:
        """The device buffer of `name`, reallocated only when `needed` bytes exceed what it has."""
        pointer, size = self._buffers.get(name, (0, 0))
        if needed <= size:
            return pointer
        if pointer:
            cuda_call(self._cudart, "cudaFree", pointer)
            del self._buffers[name]
        size = max(_ALIGNMENT, -(-needed // _ALIGNMENT) * _ALIGNMENT)
        pointer = int(cuda_call(self._cudart, "cudaMalloc", size))
        self._buffers[name] = (pointer, size)
        return pointer


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    """A TensorRT Dims as a tuple (Dims indexes like a tuple; the stubs do not declare it iterable)."""
    return tuple(dims[index] for index in range(len(dims)))


def _numpy_dtype(dtype: trt.DataType) -> np.dtype[Any]:
    """The numpy dtype of a TensorRT DataType."""
    import tensorrt as trt

    if hasattr(trt, "nptype"):
        return np.dtype(trt.nptype(dtype))
    names = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "INT8": "int8", "BOOL": "bool"}
    return np.dtype(names[dtype.name])


def load(bundle: Bundle, role: str, precision: str) -> TensorRTRunner:
    """The runner of the bundle's (role, precision) engine; BackendError when it is missing or does not fit here."""
    reason = unavailable_reason()
    if reason is not None:
        raise BackendError(reason)
    where = str(bundle.path)
    record, reason = engines.check_engine(bundle.manifest, role, precision, current_machine(), where)
    if reason is not None or record is None:
        raise BackendError(reason or engines.missing_reason(where, role, precision))
    data, path = read_engine(bundle, record)
    import tensorrt as trt

    hint = engines.rebuild_hint(where, precision, str(record.profile.get("name", "PROFILE")))
    trt_runtime = trt.Runtime(logger())
    try:
        engine = trt_runtime.deserialize_cuda_engine(data)
    except Exception as error:  # TensorRT's bindings raise their own types for some damaged engines
        raise BackendError(f"{path}: TensorRT could not deserialize the engine ({first_line(error)}); {hint}") from None
    if engine is None:
        raise BackendError(f"{path}: TensorRT could not deserialize the engine (see its log above); {hint}")
    return TensorRTRunner(trt_runtime, engine, record, bundle.manifest["graphs"][role]["inputs"], where)


def read_engine(bundle: Bundle, record: engines.EngineRecord) -> tuple[bytes, Path]:
    """The bytes of a recorded engine file and its path, once they match the sha256 the manifest's `files` table
    records: what TensorRT deserializes is what was hashed. BackendError otherwise."""
    try:
        path, expected = bundle.listed_file(record.file, f"the {record.role} {record.precision} engine record")
    except BundleError as error:
        raise BackendError(str(error)) from None
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BackendError(f"{path}: cannot read the engine ({error.strerror or error})") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise BackendError(f"{path}: sha256 differs from {MANIFEST}: the engine was changed or damaged")
    return data, path


BACKEND = Backend("tensorrt", unavailable_reason, load)
