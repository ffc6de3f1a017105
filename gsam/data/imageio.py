"""Read images and masks as numpy arrays with one-line errors naming the file."""

from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import GSAMError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# Pillow's decompression-bomb limit (about 89 megapixels): PNG and JPEG are decoded whole, so a huge
# one costs 3 bytes per pixel at least; TIFFs are read lazily and are not limited.
DEFAULT_MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS


class ImageReadError(GSAMError):
    """An image or mask file cannot be decoded."""


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale 16-bit (or other integer/float) data to 0..255 by its dtype's range."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array.astype(np.float32) / 257.0).round().astype(np.uint8)
    if array.dtype.kind == "f":
        scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
        return np.clip(array * scale, 0, 255).round().astype(np.uint8)
    return np.clip(array, 0, 255).astype(np.uint8)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    array = tifffile.imread(path)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # planar (C, H, W) TIFF
    return array


_DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)
_CONVERT_TO_RGB = ("P", "PA", "CMYK", "YCbCr", "LA", "1")


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@contextlib.contextmanager
def _pixel_limit(path: Path, limit: int | None):
    """Pillow's decompression-bomb guard at `limit` pixels, failing with a one-line error that names the flag."""
    limit = limit or DEFAULT_MAX_IMAGE_PIXELS
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageReadError(f"{path}: image of {found.group(1) if found else 'too many'} pixels is above the "
                             f"decompression-bomb limit of {limit} pixels (PNG/JPEG are decoded whole); if you trust "
                             "the file, raise it with --max-image-pixels N, or convert it to a tiled TIFF") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _decode(path: Path, kind: str, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image ("image") or a mask ("mask") file: TIFF with tifffile, the rest with Pillow."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            return _read_tiff(path)
        with _pixel_limit(path, max_pixels), Image.open(path) as img:
            img.load()
            if kind == "mask" and img.mode in ("RGB", "RGBA"):
                raise ImageReadError(f"{path}: mask is {img.mode}; expected a single-channel PNG of class ids")
            return np.asarray(img.convert("RGB") if kind == "image" and img.mode in _CONVERT_TO_RGB else img)
    except _DECODE_ERRORS as exc:
        raise ImageReadError(f"{path}: cannot read {kind} ({_reason(exc)})") from None


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Any PNG/JPEG/TIFF, 8- or 16-bit, grayscale, RGB or RGBA -> uint8 RGB (H, W, 3).

    `max_pixels` raises the decompression-bomb limit for PNG/JPEG (default: Pillow's).
    """
    path = Path(path)
    return as_rgb(_to_uint8(_decode(path, "image", max_pixels)), path)


def as_rgb(array: np.ndarray, path: Path) -> np.ndarray:
    """uint8 grayscale (H, W) / (H, W, 1), RGB or RGBA -> contiguous uint8 RGB (H, W, 3)."""
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageReadError(f"{path}: expected a grayscale, RGB or RGBA image, got array shape {array.shape}")
    return np.array(array, dtype=np.uint8, order="C", copy=True)


def read_mask(path: str | Path) -> np.ndarray:
    """A single-channel mask of class ids -> int64 (H, W)."""
    path = Path(path)
    array = _decode(path, "mask")
    if array.ndim != 2:
        raise ImageReadError(f"{path}: mask has shape {array.shape}; expected a single-channel image of class ids")
    return array.astype(np.int64)


def image_size(path: str | Path, max_pixels: int | None = None) -> tuple[int, int]:
    """(height, width) from the header, without decoding the pixels; PNG/JPEG above `max_pixels` fail."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
            return (shape[1], shape[2]) if len(shape) == 3 and shape[0] in (3, 4) and shape[-1] not in (3, 4) else shape[:2]
        with _pixel_limit(path, max_pixels), Image.open(path) as img:
            return img.height, img.width
    except _DECODE_ERRORS as exc:
        raise ImageReadError(f"{path}: cannot read image ({_reason(exc)})") from None
