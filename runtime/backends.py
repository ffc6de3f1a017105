"""One interface over every way to run a gsam model.

    segmenter = load_backend("onnxruntime", "model.onnx")
    out = segmenter(images)          # float32 [N, 3, H, W], RGB 0..255
    out["logits"], out["mask"]       # [N, C, H, W] float32, [N, H, W] int32

Backends: torch (run dir or .pt), onnxruntime (.onnx), tensorrt (.plan + sidecar),
triton-http and triton-grpc (URL + model name). `gsam predict`, `gsam bench` and the
parity tests treat them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import GSAMError
from .processing import logits_to_mask


@dataclass
class ModelInfo:
    num_classes: int
    class_names: tuple[str, ...] = ()
    min_size: int = 32
    palette: tuple = ()
    extra: dict = field(default_factory=dict)


class Segmenter:
    """Base class: subclasses implement `_run(images) -> logits` and set `info`."""

    name = "base"
    info: ModelInfo

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1] != 3:
            raise GSAMError(f"{self.name}: images must be float32 [N, 3, H, W]; got shape {list(images.shape)}")
        if min(images.shape[2:]) < self.info.min_size:
            raise GSAMError(f"{self.name}: image {images.shape[2]}x{images.shape[3]} is below the model's minimum "
                            f"side of {self.info.min_size} pixels")
        outputs = self._run(images)
        if "mask" not in outputs:
            outputs["mask"] = logits_to_mask(outputs["logits"])
        return outputs

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TorchSegmenter(Segmenter):
    """A gsam checkpoint or run directory, in PyTorch eager mode."""

    name = "torch"

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import torch

        from ..model.checkpoint import load_gsam_checkpoint
        from ..train.run_dir import resolve_checkpoint

        self.torch = torch
        self.device = torch.device(device)
        self.model, payload = load_gsam_checkpoint(resolve_checkpoint(path))
        self.model.to(self.device)
        config = self.model.config
        palette = tuple(tuple(c) for c in payload.get("classes", {}).get("palette", ()))
        self.info = ModelInfo(config.num_classes, config.class_names, config.min_size, palette)

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(images).to(self.device))
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        return {"logits": logits.float().cpu().numpy()}


class OnnxRuntimeSegmenter(Segmenter):
    """An exported gsam ONNX model in onnxruntime: CPU, or CUDA / TensorRT execution providers."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: str = "cpu", threads: int | None = None,
                 profiles: list | None = None, cache_dir: str | None = None, fp16: bool = False) -> None:
        import onnxruntime as ort

        from ..export.metadata import read_model_info

        path = Path(path)
        self.info = read_model_info(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        chain = execution_providers(providers, profiles, cache_dir or str(path.parent / "trt_cache"), fp16)
        missing = [p if isinstance(p, str) else p[0] for p in chain
                   if (p if isinstance(p, str) else p[0]) not in ort.get_available_providers()]
        if missing:
            raise GSAMError(f"onnxruntime here lacks {', '.join(missing)}; on a GPU machine pip install 'gsam[gpu]'")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chain)
        except Exception as exc:
            raise GSAMError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:200]})") from None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, {"image": images})))


def execution_providers(kind: str, profiles: list | None = None, cache_dir: str = "trt_cache",
                        fp16: bool = False) -> list:
    """onnxruntime provider chain for 'cpu', 'cuda' or 'tensorrt'.

    The TensorRT provider gets explicit profile shapes and an engine cache, so it builds
    once per profile instead of once per new input shape (onnxruntime #16889).
    """
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if kind != "tensorrt":
        raise GSAMError(f"providers must be cpu, cuda or tensorrt; got {kind!r}")
    if not profiles:
        raise GSAMError("the TensorRT execution provider needs at least one shape profile")
    join = lambda shapes: ",".join("image:" + "x".join(map(str, s)) for s in shapes)  # noqa: E731
    trt_options = {
        "trt_profile_min_shapes": join(p.min for p in profiles),
        "trt_profile_opt_shapes": join(p.opt for p in profiles),
        "trt_profile_max_shapes": join(p.max for p in profiles),
        "trt_engine_cache_enable": True, "trt_engine_cache_path": cache_dir,
        "trt_timing_cache_enable": True, "trt_fp16_enable": fp16,
    }
    return [("TensorrtExecutionProvider", trt_options), "CUDAExecutionProvider", "CPUExecutionProvider"]


def _torch(path, **options):
    return TorchSegmenter(path, **options)


def _onnxruntime(path, **options):
    return OnnxRuntimeSegmenter(path, **options)


def _tensorrt(path, **options):
    from .tensorrt_runner import TensorRTSegmenter

    return TensorRTSegmenter(path, **options)


def _triton(protocol):
    def open_triton(url, **options):
        from .triton_client import TritonSegmenter

        return TritonSegmenter(url, protocol=protocol, **options)

    return open_triton


BACKENDS: dict[str, Callable[..., Segmenter]] = {
    "torch": _torch, "onnxruntime": _onnxruntime, "tensorrt": _tensorrt,
    "triton-http": _triton("http"), "triton-grpc": _triton("grpc"),
}


def backend_names() -> list[str]:
    return list(BACKENDS)


def guess_backend(path: str | Path) -> str:
    """The backend a model file implies: .onnx -> onnxruntime, .plan/.engine -> tensorrt, else torch."""
    suffix = Path(path).suffix.lower()
    return {".onnx": "onnxruntime", ".plan": "tensorrt", ".engine": "tensorrt"}.get(suffix, "torch")


def load_backend(kind: str, target: str | Path, **options) -> Segmenter:
    if kind not in BACKENDS:
        raise GSAMError(f"unknown backend {kind!r}; expected one of {', '.join(BACKENDS)}")
    return BACKENDS[kind](target, **options)
