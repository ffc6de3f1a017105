"""Run a gsam TensorRT engine: pick the profile that contains the request, execute, return numpy.

Device buffers are torch CUDA tensors (torch is already a dependency), bound by name with the
named-tensor API that TensorRT 10 and 11 share (set_optimization_profile_async, set_input_shape,
set_tensor_address, execute_async_v3). The engine states its own input and output names and data
types, so they are read from it, not assumed; every call whose bool says TensorRT refused it ends
in one line naming what was refused. TensorRT objects carry their classes for the type checker
(tests/test_tensorrt_types.py), as in gsam.export.tensorrt.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gsam.errors import GSAMError
from gsam.export.profiles import format_shape, select_profile
from gsam.export.sidecar import EngineSidecar
from gsam.export.tensorrt import require_tensorrt

from .base import Segmenter

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


class TensorRTSegmenter(Segmenter):
    name = "tensorrt"

    def __init__(self, path: str | Path, device: int = 0) -> None:
        path = Path(path)
        self.sidecar = EngineSidecar.read(path)
        self.profiles, self.facts = self.sidecar.profiles, self.sidecar.facts
        require_tensorrt()
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise GSAMError("the tensorrt backend needs a CUDA device")
        self.torch, self.device = torch, torch.device("cuda", device)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))  # outlives the engine
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise GSAMError(f"{path}: TensorRT could not load the engine (built with another TensorRT version?)")
        self.engine = engine
        self.inputs, self.outputs = io_dtypes(engine)
        # Device memory for the active profile, reallocated on a switch (the default, STATIC, holds the
        # largest profile's for good): narrow profiles then save memory, as `gsam export profiles` counts.
        self.context = engine.create_execution_context(
            strategy=trt.ExecutionContextAllocationStrategy.ON_PROFILE_CHANGE)
        self.stream = torch.cuda.Stream(self.device)
        self.active_profile = -1

    def bind(self, index: int, image: Any, stream: int) -> dict[str, Any]:
        """Switch to profile `index` if needed, bind `image` and fresh output tensors on the device;
        GSAMError when TensorRT refuses the switch, the shape or an address."""
        context = self.context
        if index != self.active_profile:
            if not context.set_optimization_profile_async(index, stream):
                raise refused("set_optimization_profile_async", f"to switch to profile {index} "
                              f"({self.profiles[index].name})")
            self.active_profile = index
        shape = tuple(image.shape)
        if not context.set_input_shape("image", shape):
            raise refused("set_input_shape", f"input shape {format_shape(shape)} in profile {index} "
                          f"({self.profiles[index].name})")
        if not context.set_tensor_address("image", image.data_ptr()):
            raise refused("set_tensor_address", "the address of input 'image'")
        outputs = {}
        for name, dtype in self.outputs.items():
            outputs[name] = self.torch.empty(dims(context.get_tensor_shape(name)), dtype=dtype, device=self.device)
            if not context.set_tensor_address(name, outputs[name].data_ptr()):
                raise refused("set_tensor_address", f"the address of output '{name}'")
        return outputs

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        index = select_profile(list(self.profiles), images.shape)
        with torch.cuda.stream(self.stream):
            image = torch.from_numpy(images).to(self.device, dtype=self.inputs["image"], non_blocking=True)
            outputs = self.bind(index, image, self.stream.cuda_stream)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise GSAMError(f"TensorRT execution failed for input {format_shape(tuple(images.shape))}")
        self.stream.synchronize()
        return {name: tensor.cpu().numpy() for name, tensor in outputs.items()}
