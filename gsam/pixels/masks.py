"""Logits -> class-id masks, and masks -> colour overlays."""

from __future__ import annotations

import numpy as np


def logits_to_mask(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """Class ids along the channel `axis` ([N, C, H, W] by default): argmax, or logit > 0 (sigmoid > 0.5)
    for a single channel. int32."""
    if logits.shape[axis] == 1:
        return (np.take(logits, 0, axis=axis) > 0).astype(np.int32)
    return logits.argmax(axis=axis).astype(np.int32)


def mask_dtype(num_classes: int):
    """The smallest unsigned type that holds the class ids."""
    return np.uint8 if num_classes <= 256 else np.uint16


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


def logits_to_probabilities(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """Per-class probabilities along `axis`: softmax, or sigmoid for a single channel (the foreground's). float32."""
    logits = np.asarray(logits, dtype=np.float32)
    if logits.shape[axis] == 1:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)
