"""Read images and masks as numpy arrays with one-line errors naming the file.

The same format list as the server (gsam.pixels.codec): a file is opened only when its first bytes
say PNG, JPEG or TIFF, Pillow with that one plugin, TIFF with tifffile; a TIFF of several pages, an
animated PNG or more than 4 samples per pixel is refused from the header. Unlike the server, local
files may hold 32- or 64-bit float samples (the importers store float scans that way), and TIFFs are
not limited in pixels (`gsam predict` reads big ones band by band).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import GSAMError
from ..pixels.codec import DECODE_ERRORS, Header, ImageRequestError, read_header
from ..pixels.convert import planar_to_interleaved, to_rgb, to_uint8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# Pillow's decompression-bomb limit (about 89 megapixels): PNG and JPEG are decoded whole, so a huge
# one costs 3 bytes per pixel at least; TIFFs are read lazily and are not limited.
DEFAULT_MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS
LOCAL_MAX_BITS = 64  # float32/float64 TIFFs, as the importers write them


class ImageReadError(GSAMError):
    """An image or mask file cannot be decoded."""


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    return planar_to_interleaved(tifffile.imread(path, key=0))


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


# JPEG is lossy: a mask saved as JPEG gets ids that belong to no class (or a neighbour's) along every edge,
# which later reads as "class id 2 outside the declared classes" without the cause.
JPEG_MASK = ("{path}: mask is a JPEG file, whose lossy compression changes class ids along every edge; "
             "save masks losslessly as single-channel PNG (the same stem, in masks/)")


def file_header(path: Path, kind: str = "image") -> Header:
    """The file's header by its content; one line naming the file when the format, the page count or the
    samples per pixel are refused."""
    try:
        return read_header(path, max_bits=LOCAL_MAX_BITS)
    except ImageRequestError as exc:
        raise ImageReadError(f"{path}: cannot read {kind} ({exc})") from None


def _decode(path: Path, kind: str, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image ("image") or a mask ("mask") file: TIFF with tifffile, PNG/JPEG with Pillow."""
    try:
        with _pixel_limit(path, max_pixels):
            header = file_header(path, kind)
            if kind == "mask" and header.format == "JPEG":
                raise ImageReadError(JPEG_MASK.format(path=path))
            if header.format == "TIFF":
                return _read_tiff(path)
            with Image.open(path, formats=[header.format]) as img:
                img.load()
                if kind == "mask" and img.mode in ("RGB", "RGBA"):
                    raise ImageReadError(f"{path}: mask is {img.mode}; expected a single-channel PNG of class ids")
                return np.asarray(img.convert("RGB") if kind == "image" and img.mode in _CONVERT_TO_RGB else img)
    except DECODE_ERRORS as exc:
        raise ImageReadError(f"{path}: cannot read {kind} ({_reason(exc)})") from None


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Any PNG/JPEG/TIFF, 8- or 16-bit, grayscale, RGB or RGBA -> uint8 RGB (H, W, 3).

    `max_pixels` raises the decompression-bomb limit for PNG/JPEG (default: Pillow's).
    """
    path = Path(path)
    return as_rgb(to_uint8(_decode(path, "image", max_pixels)), path)


def as_rgb(array: np.ndarray, path: Path) -> np.ndarray:
    """uint8 grayscale, RGB or RGBA -> contiguous uint8 RGB (H, W, 3), a copy; a one-line error naming the file."""
    try:
        rgb = to_rgb(array)
    except ValueError as exc:
        raise ImageReadError(f"{path}: {exc}") from None
    return rgb.copy() if rgb is array else rgb


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
        with _pixel_limit(path, max_pixels):
            header = file_header(path)
            if header.format == "TIFF":
                return header.height, header.width
            with Image.open(path, formats=[header.format]) as img:
                return img.height, img.width
    except DECODE_ERRORS as exc:
        raise ImageReadError(f"{path}: cannot read image ({_reason(exc)})") from None


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Atomic PNG write of a mask or an RGB image; class-id masks above 255 classes are saved as 16-bit."""
    from ..io import atomic_path
    from ..pixels.codec import encode_png

    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_png(array, compress_level=6))
