"""The one interface every way of running a gsam model implements (gsam.runtime.backends), and the one
conversion from pictures to its input. It sits in the model layer so the export gate, below the runtime,
names the same thing it is handed.

    segmenter = load_backend("onnxruntime", "model.onnx")
    out = segmenter(images)          # float32 [N, 3, H, W], RGB 0..255
    out["logits"], out["mask"]       # [N, C, H, W] float32, [N, H, W] int32
    segmenter.facts                  # num_classes, class names, palette, min_size, ...
"""

from __future__ import annotations

import numpy as np

from gsam.errors import GSAMError
from gsam.model.facts import ModelFacts
from gsam.pixels.masks import logits_to_mask


def to_model_input(images: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """uint8 RGB (H, W, 3), or a list of same-size ones -> float32 [N, 3, H, W] in 0..255."""
    batch = np.stack(images) if isinstance(images, list) else images[None] if images.ndim == 3 else images
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected RGB images (H, W, 3); got array shape {batch.shape}")
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


class Segmenter:
    """Base class: subclasses implement `_run(images) -> {"logits": ...}` and set `facts`.

    A backend that can take an image file's own encoded bytes (a server decoding them itself) sets
    `takes_encoded` and implements `segment_encoded`; `gsam predict` then sends files as they are.
    """

    name = "base"
    facts: ModelFacts
    profiles: tuple = ()  # the shape profiles an engine serves (ShapeProfile); empty: any shape
    takes_encoded = False

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

    def segment_encoded(self, data: bytes) -> np.ndarray:
        """Encoded PNG/JPEG/TIFF bytes -> int32 mask (H, W) of the decoded image."""
        raise NotImplementedError(f"{self.name} takes tensors, not encoded images")

    def close(self) -> None:
        pass
