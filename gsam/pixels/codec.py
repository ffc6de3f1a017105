"""Encoded image bytes <-> arrays, for requests to the Triton python models (gsam_image).

Decoding follows `gsam predict`'s reader:
8- or 16-bit, grayscale, RGB or RGBA in; uint8 RGB (H, W, 3) out; plus the EXIF
orientation a phone camera writes. The size is checked from the header before the pixels
are decoded, so an oversized image is refused without paying for it.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .convert import is_planar, planar_to_interleaved, to_rgb, to_uint8

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_CONVERT_TO_RGB = ("P", "PA", "CMYK", "YCbCr", "LA", "1")


class ImageRequestError(ValueError):
    """The request's image bytes are not an image this model takes (a client error)."""


def _check_size(height, width, min_size, max_pixels):
    if min(height, width) < min_size:
        raise ImageRequestError(f"image is {height}x{width}; height and width must be >= {min_size}")
    if max_pixels and height * width > max_pixels:
        raise ImageRequestError(f"image is {height}x{width} = {height * width} pixels; this model's limit is "
                                f"max_pixels={max_pixels}")


def _decode_tiff(data, min_size, max_pixels):
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        shape = tif.pages[0].shape
        height, width = (shape[1], shape[2]) if is_planar(shape) else (shape[0], shape[1])
        _check_size(height, width, min_size, max_pixels)
        return planar_to_interleaved(tif.pages[0].asarray())


def decode_image(data, min_size=1, max_pixels=0):
    """PNG/JPEG/TIFF bytes -> uint8 RGB (H, W, 3), EXIF orientation applied; size checked first."""
    try:
        if data[:4] in _TIFF_MAGIC:
            array = _decode_tiff(data, min_size, max_pixels)
        else:
            array = _decode_pillow(data, min_size, max_pixels)
    except ImageRequestError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageRequestError(f"cannot decode the image bytes ({reason})") from None
    try:
        return to_rgb(to_uint8(array))
    except ValueError as exc:
        raise ImageRequestError(str(exc)) from None


def _decode_pillow(data, min_size, max_pixels):
    """PNG/JPEG through Pillow, with the EXIF orientation applied; the size is checked from the header."""
    with Image.open(io.BytesIO(data)) as img:
        orientation = img.getexif().get(0x0112, 1)
        height, width = (img.width, img.height) if orientation in (5, 6, 7, 8) else (img.height, img.width)
        _check_size(height, width, min_size, max_pixels)
        img.load()
        img = ImageOps.exif_transpose(img)
        return np.asarray(img.convert("RGB") if img.mode in _CONVERT_TO_RGB else img)


def encode_png(array, compress_level=1):
    """A class-id mask (H, W) or an RGB image (H, W, 3) -> PNG bytes; masks above 255 classes as 16-bit.
    Level 1 by default: a server answers faster, and masks compress well at any level."""
    if array.ndim == 2 and array.max(initial=0) > 255:
        image = Image.fromarray(array.astype(np.uint16))
    else:
        image = Image.fromarray(array.astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
