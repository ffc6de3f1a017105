"""Encoded image bytes <-> arrays for the Triton python-backend models.

Copied beside model.py into each model version folder, so it imports nothing from gsam
(only numpy, Pillow and, for TIFF, tifffile). Decoding follows `gsam predict`'s reader:
8- or 16-bit, grayscale, RGB or RGBA in; uint8 RGB (H, W, 3) out; plus the EXIF
orientation a phone camera writes. The size is checked from the header before the pixels
are decoded, so an oversized image is refused without paying for it.
"""

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_CONVERT_TO_RGB = ("P", "PA", "CMYK", "YCbCr", "LA", "1")


class ImageRequestError(ValueError):
    """The request's image bytes are not an image this model takes (a client error)."""


def _to_uint8(array):
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array.astype(np.float32) / 257.0).round().astype(np.uint8)
    if array.dtype.kind == "f":
        scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
        return np.clip(array * scale, 0, 255).round().astype(np.uint8)
    return np.clip(array, 0, 255).astype(np.uint8)


def _to_rgb(array):
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageRequestError(f"expected a grayscale, RGB or RGBA image; got array shape {list(array.shape)}")
    return np.ascontiguousarray(array, dtype=np.uint8)


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
        planar = len(shape) == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4)
        height, width = (shape[1], shape[2]) if planar else (shape[0], shape[1])
        _check_size(height, width, min_size, max_pixels)
        array = tif.pages[0].asarray()
    return np.moveaxis(array, 0, -1) if planar else array


def decode_image(data, min_size=1, max_pixels=0):
    """PNG/JPEG/TIFF bytes -> uint8 RGB (H, W, 3), EXIF orientation applied; size checked first."""
    try:
        if data[:4] in _TIFF_MAGIC:
            return _to_rgb(_to_uint8(_decode_tiff(data, min_size, max_pixels)))
        with Image.open(io.BytesIO(data)) as img:
            orientation = img.getexif().get(0x0112, 1)
            height, width = (img.width, img.height) if orientation in (5, 6, 7, 8) else (img.height, img.width)
            _check_size(height, width, min_size, max_pixels)
            img.load()
            img = ImageOps.exif_transpose(img)
            array = np.asarray(img.convert("RGB") if img.mode in _CONVERT_TO_RGB else img)
    except ImageRequestError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageRequestError(f"cannot decode the image bytes ({reason})") from None
    return _to_rgb(_to_uint8(array))


def encode_png(array):
    """A class-id mask (H, W) or an RGB image (H, W, 3) -> PNG bytes; masks above 255 classes as 16-bit."""
    if array.ndim == 2 and array.max(initial=0) > 255:
        image = Image.fromarray(array.astype(np.uint16))
    else:
        image = Image.fromarray(array.astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def overlay(image, mask, palette, alpha=0.5, rows=256):
    """Class colours blended over the image; background (class 0) stays as it is.

    Computed `rows` rows at a time, so a 36-megapixel overlay needs no full-size float copies."""
    picture = np.empty(image.shape[:2] + (3,), np.uint8)
    for y in range(0, image.shape[0], rows):
        part, labels = image[y:y + rows], mask[y:y + rows]
        colours = palette[np.clip(labels, 0, len(palette) - 1)].astype(np.float32)
        blended = part.astype(np.float32) * (1 - alpha) + colours * alpha
        picture[y:y + rows] = np.where((labels > 0)[:, :, None], blended, part).round()
    return picture
