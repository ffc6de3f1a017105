"""Which GPU an engine was built on: recorded in its sidecar, compared before the engine is loaded.

A TensorRT plan is compiled for one GPU architecture ("Without [hardware compatibility] mode, engines are
not portable across different GPU architectures": TensorRT's support matrix), so on a GPU of another
compute capability it fails late, in TensorRT's own words. gsam records the build GPU's name and compute
capability and stops before deserializing, in one line naming both GPUs. Another board of the same
architecture is let through (TensorRT itself loads it, with a warning about performance).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsam.errors import GSAMError


@dataclass(frozen=True)
class GpuFacts:
    name: str  # as CUDA names it, e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str  # "major.minor", e.g. "9.0"

    def describe(self) -> str:
        return f"{self.name} (compute capability {self.compute_capability})"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "compute_capability": self.compute_capability}

    @classmethod
    def from_dict(cls, data: Any) -> "GpuFacts | None":
        if data is None:
            return None
        return cls(str(data["name"]), str(data["compute_capability"]))


def cuda_gpu(index: int) -> GpuFacts | None:
    """cuda:index's name and compute capability as torch reports them; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(index)
    return GpuFacts(torch.cuda.get_device_name(index), f"{major}.{minor}")


def check_engine_gpu(engine: str | Path, built_on: GpuFacts | None, here: GpuFacts, index: int) -> None:
    """GSAMError naming both GPUs when the engine was built for another architecture; nothing to compare for a
    sidecar that records no GPU (written before gsam recorded it)."""
    if built_on is not None and built_on.compute_capability != here.compute_capability:
        raise GSAMError(f"{engine}: built on {built_on.describe()}, but cuda:{index} is {here.describe()}; a TensorRT "
                        "engine does not move to another GPU architecture: rebuild it on this GPU with "
                        "`gsam export tensorrt`")
