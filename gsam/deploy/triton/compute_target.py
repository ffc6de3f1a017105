"""Which model of the repository gsam_image sends its pixels to, and what it sends (`--compute-model`).

gsam_image decodes, bounds, tiles and encodes; the network runs in a compute model, called with
BLS: gsam_trt when the repository has an engine, else gsam_onnx on a GPU host, else gsam_python.
The choice travels in gsam_image's config parameters (read by runtime/triton_python/compute.py), with
what that model takes: its input's name and type (uint8 wherever it takes it, so a tile costs 1
byte per channel), its largest batch, and for an engine the height and width ranges of its profiles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gsam.errors import GSAMError
from gsam.export.profiles import ShapeProfile
from gsam.model.facts import ModelFacts
from gsam.runtime.triton_names import ENGINE_MODEL, ONNX_MODEL, TENSOR_MODEL

from .engine_config import engine_batching

COMPUTE_MODELS = ("auto", ENGINE_MODEL, ONNX_MODEL, TENSOR_MODEL, "in-process")


@dataclass(frozen=True)
class ComputeTarget:
    model: str = ""  # a model of the repository; "" runs onnxruntime inside gsam_image
    input: str = "image"
    input_dtype: str = "float32"
    max_batch: int = 1  # images one call may hold (tiles of one image go in batches of this many)
    ranges: tuple[tuple[int, int, int, int], ...] = ()  # (hmin, wmin, hmax, wmax) per engine profile

    def parameters(self) -> dict[str, str]:
        return {"compute_model": self.model, "compute_input": self.input, "compute_input_dtype": self.input_dtype,
                "compute_max_batch": str(self.max_batch), "compute_ranges": json.dumps([list(r) for r in self.ranges])}


def choose_compute(requested: str, facts: ModelFacts, *, engine_profiles: list[ShapeProfile], gpu: bool,
                   python_max_batch: int, tile_pixels: int, max_pixels: int) -> ComputeTarget:
    """The compute model for `requested` (COMPUTE_MODELS). `python_max_batch` is gsam_python's dynamic batch
    (0: none); `tile_pixels` a tile's area when gsam_image tiles (0: it does not)."""
    if requested not in COMPUTE_MODELS:
        raise GSAMError(f"--compute-model {requested!r}: expected one of {', '.join(COMPUTE_MODELS)}")
    if requested == "auto":
        requested = ENGINE_MODEL if engine_profiles else ONNX_MODEL if gpu else TENSOR_MODEL
    if requested == "in-process":
        return ComputeTarget()
    if requested == TENSOR_MODEL:
        by_pixels = max(1, max_pixels // tile_pixels) if tile_pixels else 1
        return ComputeTarget(TENSOR_MODEL, "image_uint8", "uint8", min(python_max_batch or by_pixels, by_pixels))
    if requested == ONNX_MODEL:
        return ComputeTarget(ONNX_MODEL, "image", facts.input_dtype, 1)
    if not engine_profiles:
        raise GSAMError("--compute-model gsam_trt needs gsam_trt in the repository: give --engine or --profile")
    ranges = tuple((p.min[2], p.min[3], p.max[2], p.max[3]) for p in engine_profiles)
    return ComputeTarget(ENGINE_MODEL, "image", facts.input_dtype,
                         max(1, engine_batching(engine_profiles).max_batch_size), ranges)
