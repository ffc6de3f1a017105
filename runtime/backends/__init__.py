"""Every way to run a gsam model behind one call: `load_backend(kind, target, **options)`.

Backends: torch (run dir or .pt), onnxruntime (.onnx), tensorrt (.plan + sidecar),
triton-http and triton-grpc (URL + model name), triton-image (URL of gsam_image: bytes in,
PNG out). Each lives in its own module, imported only
when asked for, so `gsam predict --backend onnxruntime` never imports TensorRT or tritonclient.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from gsam.errors import GSAMError
from gsam.export.gate import GateRunners
from gsam.model.segmenter import Segmenter

# name -> (module, class, fixed keyword arguments)
BACKENDS: dict[str, tuple[str, str, dict]] = {
    "torch": ("torch_eager", "TorchSegmenter", {}),
    "onnxruntime": ("onnx_runtime", "OnnxRuntimeSegmenter", {}),
    "tensorrt": ("tensorrt_engine", "TensorRTSegmenter", {}),
    "triton-http": ("triton_client", "TritonSegmenter", {"protocol": "http"}),
    "triton-grpc": ("triton_client", "TritonSegmenter", {"protocol": "grpc"}),
    "triton-image": ("triton_client", "TritonImageSegmenter", {}),
}
SUFFIX_BACKEND = {".onnx": "onnxruntime", ".plan": "tensorrt", ".engine": "tensorrt"}


def backend_names() -> list[str]:
    return list(BACKENDS)


def guess_backend(path: str | Path) -> str:
    """The backend a model file implies: .onnx -> onnxruntime, .plan/.engine -> tensorrt, else torch."""
    return SUFFIX_BACKEND.get(Path(path).suffix.lower(), "torch")


def load_backend(kind: str, target: str | Path, **options) -> Segmenter:
    if kind not in BACKENDS:
        raise GSAMError(f"unknown backend {kind!r}; expected one of {', '.join(BACKENDS)}")
    module, cls, fixed = BACKENDS[kind]
    segmenter_class = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    return segmenter_class(target, **fixed, **options)


def gate_runners() -> GateRunners:
    """What the export gate runs: a run's PyTorch model as the reference, ONNX files in onnxruntime (CPU)."""
    return GateRunners(reference=lambda run: load_backend("torch", run),
                       candidate=lambda path: load_backend("onnxruntime", path))


__all__ = ["Segmenter", "load_backend", "backend_names", "guess_backend", "gate_runners", "BACKENDS"]
