"""Run a gsam TensorRT engine: pick the profile that contains the request, execute, return numpy.

Device buffers are torch CUDA tensors (torch is already a dependency), bound by name with
the named-tensor API that TensorRT 10 and 11 share (set_input_shape, set_tensor_address,
execute_async_v3, set_optimization_profile_async).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gsam.errors import GSAMError
from gsam.export.profiles import select_profile
from gsam.export.sidecar import EngineSidecar
from gsam.export.tensorrt import require_tensorrt

from .base import Segmenter


class TensorRTSegmenter(Segmenter):
    name = "tensorrt"

    def __init__(self, path: str | Path, device: int = 0) -> None:
        path = Path(path)
        self.sidecar = EngineSidecar.read(path)
        self.profiles, self.facts = self.sidecar.profiles, self.sidecar.facts
        trt = require_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise GSAMError("the tensorrt backend needs a CUDA device")
        self.torch, self.device = torch, torch.device("cuda", device)
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise GSAMError(f"{path}: TensorRT could not load the engine (built with another TensorRT version?)")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        self.active_profile = -1
        self.dtypes = {"logits": torch.float32, "mask": torch.int32}

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        index = select_profile(self.profiles, images.shape)
        with torch.cuda.stream(self.stream):
            if index != self.active_profile:
                self.context.set_optimization_profile_async(index, self.stream.cuda_stream)
                self.active_profile = index
            image = torch.from_numpy(images).to(self.device, non_blocking=True)
            self.context.set_input_shape("image", tuple(image.shape))
            self.context.set_tensor_address("image", image.data_ptr())
            outputs = {}
            for name, dtype in self.dtypes.items():
                outputs[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device=self.device)
                self.context.set_tensor_address(name, outputs[name].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise GSAMError("TensorRT execution failed")
        self.stream.synchronize()
        return {name: tensor.cpu().numpy() for name, tensor in outputs.items()}
