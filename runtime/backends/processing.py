"""Image in -> model input; logits -> class-id mask, colour overlay. Shared by every backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ...data.palette import default_palette
from ...io import atomic_path


def to_model_input(images: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """uint8 RGB (H, W, 3), or a list of same-size ones -> float32 [N, 3, H, W] in 0..255."""
    batch = np.stack(images) if isinstance(images, list) else images[None] if images.ndim == 3 else images
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected RGB images (H, W, 3); got array shape {batch.shape}")
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


def logits_to_mask(logits: np.ndarray) -> np.ndarray:
    """[N, C, H, W] -> int32 [N, H, W]: argmax, or logit > 0 (sigmoid > 0.5) for one channel."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).astype(np.int32)
    return logits.argmax(axis=1).astype(np.int32)


def palette_for(num_classes: int, palette=None) -> np.ndarray:
    colours = list(palette) if palette else default_palette(max(num_classes, 2))
    return np.array(colours, dtype=np.uint8)


def colorize(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    return palette[np.clip(mask, 0, len(palette) - 1)]


def overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5,
            rows: int = 256) -> np.ndarray:
    """Blend class colours over the image; background (class 0) stays as it is.

    Computed `rows` rows at a time, so a 36-megapixel overlay needs no full-size float copies."""
    picture = np.empty(image.shape[:2] + (3,), np.uint8)
    for y in range(0, image.shape[0], rows):
        part, labels = image[y:y + rows], mask[y:y + rows]
        blended = part.astype(np.float32) * (1 - alpha) + colorize(labels, palette).astype(np.float32) * alpha
        picture[y:y + rows] = np.where((labels > 0)[:, :, None], blended, part).round()
    return picture


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Atomic PNG write; class-id masks above 255 classes are saved as 16-bit."""
    if array.ndim == 2 and array.max(initial=0) > 255:
        image = Image.fromarray(array.astype(np.uint16))
    else:
        image = Image.fromarray(array.astype(np.uint8))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
