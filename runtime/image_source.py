"""What `Predictor.predict` accepts, made one thing: a path, encoded bytes, a PIL image or a uint8 HxWx3 array.

A path is measured from its header first, so an image above the tiling threshold is read band by band
(lazily for TIFFs) and never decoded whole; everything else is held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsam.data.large_image import ArrayRows, open_rows
from gsam.data.imageio import image_size, read_image
from gsam.errors import GSAMError
from gsam.pixels.codec import ImageRequestError, decode_image


@dataclass
class ImageSource:
    """One image to segment: its name, size, and either a path (read on demand), bytes or pixels."""

    name: str
    height: int
    width: int
    path: Path | None = None
    data: bytes | None = None  # the file's own encoded bytes, when there are any
    pixels: np.ndarray | None = None  # uint8 (H, W, 3), when already decoded
    max_image_pixels: int | None = None

    @property
    def pixel_count(self) -> int:
        return self.height * self.width

    def encoded(self) -> bytes:
        """Bytes for a server that decodes them itself: the file's own, else a lossless PNG of the pixels."""
        if self.data is None:
            from gsam.pixels.codec import encode_png

            self.data = self.path.read_bytes() if self.path is not None else encode_png(self.rgb())
        return self.data

    def rgb(self) -> np.ndarray:
        """The whole image as uint8 (H, W, 3); the decoded bytes as a server would see them (EXIF applied)."""
        if self.pixels is None:
            if self.path is not None:
                self.pixels = read_image(self.path, self.max_image_pixels)
            else:
                self.pixels = _decode(self.data, self.name)
        return self.pixels

    def rows(self):
        """A row reader (`read_rows(y0, y1)`, `close()`) that holds as little of the image as it can."""
        if self.pixels is None and self.path is not None:
            return open_rows(self.path, self.max_image_pixels)
        return ArrayRows(self.rgb())


def _decode(data: bytes, name: str) -> np.ndarray:
    try:
        return decode_image(data)
    except ImageRequestError as exc:
        raise GSAMError(f"{name}: {exc}") from None


def image_source(image, max_image_pixels: int | None = None, name: str | None = None) -> ImageSource:
    """Any accepted input -> ImageSource; anything else is a one-line error naming what was given."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise GSAMError(f"{path}: no such image file")
        height, width = image_size(path, max_image_pixels)
        return ImageSource(name or path.stem, height, width, path=path, max_image_pixels=max_image_pixels)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        pixels = _decode(data, name or "image bytes")
        return ImageSource(name or "image", *pixels.shape[:2], data=data, pixels=pixels)
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        pixels = np.asarray(image.convert("RGB"))
        return ImageSource(name or Path(getattr(image, "filename", "") or "image").stem, *pixels.shape[:2],
                           pixels=pixels)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise GSAMError(f"image array must be uint8 (H, W, 3) RGB; got {image.dtype} {list(image.shape)}")
        return ImageSource(name or "image", *image.shape[:2], pixels=np.ascontiguousarray(image))
    raise GSAMError(f"cannot segment a {type(image).__name__}: give a path, encoded bytes, a PIL image or a "
                    "uint8 (H, W, 3) array")
