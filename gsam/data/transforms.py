"""Training augmentation (the paper's recipe) on image and mask together, via torchvision v2."""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


class TrainTransform:
    """Random crop (padding small images: image with 0, mask with the ignore index),
    horizontal flip and rotation within +-degrees; with `resize`, every image is first resized
    to that HxW (the reference code's resize-then-crop)."""

    def __init__(self, crop: tuple[int, int], ignore_index: int, degrees: float = 90.0,
                 resize: tuple[int, int] | None = None) -> None:
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
        self.pipeline = v2.Compose(([_resize(resize)] if resize else []) + [
            v2.RandomRotation(degrees, interpolation=v2.InterpolationMode.BILINEAR, fill=fill),
            v2.RandomCrop(crop, pad_if_needed=True, fill=fill),
            v2.RandomHorizontalFlip(),
        ])

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.pipeline(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


def _resize(size: tuple[int, int]) -> v2.Resize:
    """Bilinear (antialiased) for images; torchvision resizes tv_tensors.Mask with nearest neighbour."""
    return v2.Resize(list(size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)


class ResizeTransform:
    """Resize image and mask to a fixed HxW: validation under --resize (the reference evaluates there)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.resize = _resize(size)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.resize(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
