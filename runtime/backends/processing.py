"""Image in -> model input; palettes and mask files. Shared by every backend (masks and overlays: gsam.pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gsam.io import atomic_path
from gsam.pixels.codec import encode_png


def to_model_input(images: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """uint8 RGB (H, W, 3), or a list of same-size ones -> float32 [N, 3, H, W] in 0..255."""
    batch = np.stack(images) if isinstance(images, list) else images[None] if images.ndim == 3 else images
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected RGB images (H, W, 3); got array shape {batch.shape}")
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Atomic PNG write; class-id masks above 255 classes are saved as 16-bit."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_png(array, compress_level=6))
