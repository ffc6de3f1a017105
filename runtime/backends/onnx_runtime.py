"""An exported gsam ONNX model in onnxruntime: CPU, or the CUDA / TensorRT execution providers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gsam.errors import GSAMError
from gsam.export.metadata import read_onnx_facts
from gsam.export.profiles import ShapeProfile, onnxruntime_trt_options
from gsam.model.segmenter import Segmenter
from gsam.pixels.convert import as_input_dtype

PROVIDERS = ("cpu", "cuda", "tensorrt")


class OnnxRuntimeSegmenter(Segmenter):
    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: str = "cpu", *, threads: int | None = None,
                 profiles: list[ShapeProfile] | None = None, cache_dir: str | None = None, fp16: bool = False) -> None:
        import onnxruntime as ort

        path = Path(path)
        self.facts = read_onnx_facts(path)
        options = ort.SessionOptions()
        # onnxruntime ignores OMP_NUM_THREADS; gsam's commands set it to the cores other work leaves idle
        # (gsam.machine.choose_threads), and onnxruntime's pool stalls on busy cores as OpenMP's does
        threads = threads or int(os.environ.get("GSAM_THREADS_CHOSEN", "0") or 0)
        if threads:
            options.intra_op_num_threads = threads
        chain = execution_providers(providers, profiles, cache_dir or str(path.parent / "trt_cache"), fp16)
        names = [p if isinstance(p, str) else p[0] for p in chain]
        missing = [n for n in names if n not in ort.get_available_providers()]
        if missing:
            raise GSAMError(f"onnxruntime here lacks {', '.join(missing)}; on a GPU machine pip install 'gsam[gpu]'")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chain)
        except Exception as exc:
            raise GSAMError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:200]})") from None
        started = self.session.get_providers()
        if names[0] not in started:
            raise GSAMError(f"{path}: onnxruntime's {names[0]} did not start (running on {', '.join(started)} "
                            f"instead); see onnxruntime's log above")
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        feed = as_input_dtype(images, self.facts.input_dtype)
        return dict(zip(self.output_names, self.session.run(None, {"image": feed})))


def execution_providers(kind: str, profiles: list[ShapeProfile] | None = None, cache_dir: str = "trt_cache",
                        fp16: bool = False) -> list:
    """onnxruntime provider chain for 'cpu', 'cuda' or 'tensorrt'.

    The TensorRT provider gets one profile's shapes and an engine cache, so it builds once
    instead of once per new input shape. One profile only: with several, onnxruntime keeps its
    execution context on the first.
    """
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if kind != "tensorrt":
        raise GSAMError(f"providers must be one of {', '.join(PROVIDERS)}; got {kind!r}")
    if not profiles or len(profiles) > 1:
        raise GSAMError(f"onnxruntime's TensorRT provider takes exactly one shape profile; got {len(profiles or [])} "
                        "(the tensorrt backend serves several from one engine)")
    trt_options = {**onnxruntime_trt_options(profiles), "trt_engine_cache_enable": True,
                   "trt_engine_cache_path": cache_dir, "trt_timing_cache_enable": True, "trt_fp16_enable": fp16}
    return [("TensorrtExecutionProvider", trt_options), "CUDAExecutionProvider", "CPUExecutionProvider"]
