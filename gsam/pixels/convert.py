"""Decoded pixels of any depth and channel count -> the uint8 RGB (H, W, 3) every model takes."""

from __future__ import annotations

import numpy as np


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale 16-bit (or other integer/float) data to 0..255 by its dtype's range; floats in 0..1 by 255."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array.astype(np.float32) / 257.0).round().astype(np.uint8)
    if array.dtype.kind == "f":
        scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
        return np.clip(array * scale, 0, 255).round().astype(np.uint8)
    return np.clip(array, 0, 255).astype(np.uint8)


def to_rgb(array: np.ndarray) -> np.ndarray:
    """uint8 grayscale (H, W) / (H, W, 1), RGB or RGBA -> contiguous uint8 RGB (H, W, 3); ValueError otherwise."""
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a grayscale, RGB or RGBA image; got array shape {list(array.shape)}")
    return np.ascontiguousarray(array, dtype=np.uint8)


def planar_to_interleaved(array: np.ndarray) -> np.ndarray:
    """A planar (C, H, W) TIFF array as (H, W, C); anything else unchanged."""
    if is_planar(array.shape):
        return np.moveaxis(array, 0, -1)
    return array


def is_planar(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4)


def as_input_dtype(images: np.ndarray, dtype: str) -> np.ndarray:
    """RGB 0..255 [N, 3, H, W] as a model's `image` input takes it: float32, or uint8 (rounded, clipped)."""
    if dtype == "uint8":
        return images if images.dtype == np.uint8 else np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(images, dtype=np.float32)


def is_whole_uint8(images: np.ndarray) -> bool:
    """Whether float pixels are whole numbers in 0..255, so sending them as uint8 loses nothing."""
    return images.dtype == np.uint8 or bool(np.all((images >= 0) & (images <= 255) & (images == np.rint(images))))
