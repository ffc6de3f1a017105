"""Run a gsam TensorRT engine: pick the profile that contains the request, execute, return numpy.

Device buffers are torch CUDA tensors (torch is already a dependency), bound by name with the
named-tensor API that TensorRT 10 and 11 share (set_optimization_profile_async, set_input_shape,
set_tensor_address, execute_async_v3). The engine states its own input and output names and data
types, so they are read from it, not assumed; every call whose bool says TensorRT refused it ends
in one line naming what was refused. TensorRT objects carry their classes for the type checker
(tests/test_tensorrt_types.py), as in gsam.export.tensorrt.

One runner serves several threads (`gsam bench` at concurrency > 1 shares it): an execution context
holds its profile, shapes and addresses, and TensorRT's runtime may be used by several threads only
"so long as each object uses a different execution context" (its developer guide, thread safety), so
each thread gets its own context and CUDA stream (a Lane); the engine and its weights are shared.
Before the engine is deserialized the sidecar's GPU is compared with this one (export/gpu.py) and
the CUDA device is made current, so on a multi-GPU host the engine lands on the device asked for.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from gsam.errors import GSAMError
from gsam.export.gpu import check_engine_gpu, cuda_gpu
from gsam.export.profiles import ShapeProfile, format_shape, select_profile
from gsam.export.sidecar import EngineSidecar
from gsam.export.tensorrt import require_tensorrt
from gsam.model.segmenter import Segmenter

if TYPE_CHECKING:
    import tensorrt as trt

# TensorRT DataType names -> torch dtype names (the types a gsam engine's I/O can have).
TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32", "INT64": "int64",
                "INT8": "int8", "UINT8": "uint8", "BOOL": "bool"}


def torch_dtype(name: str, dtype: trt.DataType) -> Any:
    """The torch dtype of a TensorRT tensor, or GSAMError naming the tensor and its type."""
    import torch

    if dtype.name not in TORCH_DTYPES:
        raise GSAMError(f"engine tensor '{name}' has TensorRT type {dtype.name}, which gsam cannot bind "
                        f"(expected one of {', '.join(TORCH_DTYPES)})")
    return getattr(torch, TORCH_DTYPES[dtype.name])


def io_dtypes(engine: trt.ICudaEngine) -> tuple[dict[str, Any], dict[str, Any]]:
    """({input name: torch dtype}, {output name: torch dtype}), in the engine's order."""
    import tensorrt as trt

    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        target = inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs
        target[name] = torch_dtype(name, engine.get_tensor_dtype(name))
    if list(inputs) != ["image"]:
        raise GSAMError(f"engine inputs {list(inputs)}: a gsam engine has one input, 'image'")
    return inputs, outputs


def dims(shape: trt.Dims) -> tuple[int, ...]:
    return tuple(shape[i] for i in range(len(shape)))


def refused(call: str, what: str) -> GSAMError:
    return GSAMError(f"TensorRT refused {what} ({call} returned False)")


def device_address(tensor: Any) -> int:
    """The device pointer TensorRT binds: an int, never the tensor itself."""
    return int(tensor.data_ptr())


class Lane:
    """One thread's execution context, CUDA stream (None on the CPU, for tests) and active profile."""

    context: trt.IExecutionContext

    def __init__(self, context: trt.IExecutionContext, stream: Any) -> None:
        self.context, self.stream, self.active_profile = context, stream, -1

    @property
    def handle(self) -> int:
        """The stream as TensorRT takes it (0: the default stream)."""
        return int(self.stream.cuda_stream) if self.stream is not None else 0

    def synchronize(self) -> None:
        if self.stream is not None:
            self.stream.synchronize()


class TensorRTSegmenter(Segmenter):
    name = "tensorrt"
    runtime: trt.Runtime
    engine: trt.ICudaEngine

    def __init__(self, path: str | Path, device: int = 0) -> None:
        path = Path(path)
        sidecar = EngineSidecar.read(path)
        require_tensorrt()
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise GSAMError("the tensorrt backend needs a CUDA device")
        if not 0 <= device < torch.cuda.device_count():
            raise GSAMError(f"cuda:{device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        here = cuda_gpu(device)
        assert here is not None
        check_engine_gpu(path, sidecar.gpu, here, device)
        torch.cuda.set_device(device)  # TensorRT deserializes onto the current device
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))  # outlives the engine
        engine: trt.ICudaEngine | None = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise GSAMError(f"{path}: TensorRT could not load the engine (built with another TensorRT version?)")
        self._adopt(engine, sidecar, torch.device("cuda", device))

    @classmethod
    def for_engine(cls, engine: trt.ICudaEngine, sidecar: EngineSidecar, device: Any) -> "TensorRTSegmenter":
        """A runner around an engine already deserialized, on `device` (a torch.device)."""
        runner = cls.__new__(cls)
        runner._adopt(engine, sidecar, device)
        return runner

    def _adopt(self, engine: trt.ICudaEngine, sidecar: EngineSidecar, device: Any) -> None:
        import torch

        self.sidecar, self.engine, self.torch, self.device = sidecar, engine, torch, device
        self.profiles: tuple[ShapeProfile, ...] = sidecar.profiles
        self.facts = sidecar.facts
        self.inputs, self.outputs = io_dtypes(engine)
        self._local = threading.local()

    def lane(self) -> Lane:
        """This thread's lane, made on its first call. Each context allocates on each profile change (the
        default, STATIC, holds the largest profile's memory for good): narrow profiles then save memory, as
        `gsam export profiles` counts."""
        found: Lane | None = getattr(self._local, "lane", None)
        if found is not None:
            return found
        import tensorrt as trt

        context: trt.IExecutionContext | None = self.engine.create_execution_context(
            strategy=trt.ExecutionContextAllocationStrategy.ON_PROFILE_CHANGE)
        if context is None:
            raise GSAMError("TensorRT could not create an execution context (out of GPU memory?)")
        stream = self.torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        made = Lane(context, stream)
        self._local.lane = made
        return made

    def bind(self, lane: Lane, index: int, image: Any) -> dict[str, Any]:
        """Switch the lane to profile `index` if needed, bind `image` and fresh output tensors on the device;
        GSAMError when TensorRT refuses the switch, the shape or an address."""
        context: trt.IExecutionContext = lane.context
        if index != lane.active_profile:
            if not context.set_optimization_profile_async(index, lane.handle):
                raise refused("set_optimization_profile_async", f"to switch to profile {index} "
                              f"({self.profiles[index].name})")
            lane.active_profile = index
        shape = tuple(image.shape)
        if not context.set_input_shape("image", shape):
            raise refused("set_input_shape", f"input shape {format_shape(shape)} in profile {index} "
                          f"({self.profiles[index].name})")
        if not context.set_tensor_address("image", device_address(image)):
            raise refused("set_tensor_address", "the address of input 'image'")
        outputs = {}
        for name, dtype in self.outputs.items():
            outputs[name] = self.torch.empty(dims(context.get_tensor_shape(name)), dtype=dtype, device=self.device)
            if not context.set_tensor_address(name, device_address(outputs[name])):
                raise refused("set_tensor_address", f"the address of output '{name}'")
        return outputs

    @contextlib.contextmanager
    def _on_device(self, lane: Lane) -> Iterator[None]:
        """The runner's CUDA device and the lane's stream current (the calling thread may have another)."""
        with contextlib.ExitStack() as stack:
            if self.device.type == "cuda":
                stack.enter_context(self.torch.cuda.device(self.device))
                stack.enter_context(self.torch.cuda.stream(lane.stream))
            yield

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        torch, lane = self.torch, self.lane()
        index = select_profile(list(self.profiles), images.shape)
        with self._on_device(lane):
            image = torch.from_numpy(images).to(self.device, dtype=self.inputs["image"], non_blocking=True)
            outputs = self.bind(lane, index, image)
            if not lane.context.execute_async_v3(lane.handle):
                raise GSAMError(f"TensorRT execution failed for input {format_shape(tuple(images.shape))}")
        lane.synchronize()
        return {name: tensor.cpu().numpy() for name, tensor in outputs.items()}
