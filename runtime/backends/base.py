"""The one interface every way of running a gsam model implements.

    segmenter = load_backend("onnxruntime", "model.onnx")
    out = segmenter(images)          # float32 [N, 3, H, W], RGB 0..255
    out["logits"], out["mask"]       # [N, C, H, W] float32, [N, H, W] int32
    segmenter.facts                  # num_classes, class names, palette, min_size, ...
"""

from __future__ import annotations

import numpy as np

from ...errors import GSAMError
from ...facts import ModelFacts
from .processing import logits_to_mask


class Segmenter:
    """Base class: subclasses implement `_run(images) -> {"logits": ...}` and set `facts`."""

    name = "base"
    facts: ModelFacts

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1] != 3:
            raise GSAMError(f"{self.name}: images must be float32 [N, 3, H, W]; got shape {list(images.shape)}")
        if min(images.shape[2:]) < self.facts.min_size:
            raise GSAMError(f"{self.name}: image {images.shape[2]}x{images.shape[3]} is below the model's minimum "
                            f"side of {self.facts.min_size} pixels")
        outputs = self._run(images)
        if "mask" not in outputs:
            outputs["mask"] = logits_to_mask(outputs["logits"])
        return outputs

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass
