"""Encoded image bytes <-> arrays, for requests to the Triton python models (gsam_image).

Decoding follows `gsam predict`'s reader: 8- or 16-bit, grayscale, RGB or RGBA in; uint8 RGB
(H, W, 3) out; plus the EXIF orientation a phone camera writes.

Bounds before bytes: every image is refused from its header before a decoder allocates anything.
Only the formats the docs list are opened, told apart by their first bytes, never by asking
every Pillow plugin (EPS would hand the bytes to Ghostscript): PNG and JPEG through Pillow with
`formats=` set to that one format, TIFF through tifffile. The header must show one image (an
animated PNG or a TIFF of several pages is refused: one image per request; a JPEG written as an
MPO by a stereo or phone camera is its primary image, the one every viewer shows), at most
`max_pixels` pixels, at most 4 samples per pixel and 16 bits per sample, so decoding costs at
most max_pixels x 8 bytes. A TIFF must also be uncompressed or Deflate, each strip or tile no
larger than the image (or 1 MiPx), and each Deflate segment is inflated with a bound first, so a
small body cannot expand into gigabytes inside one strip. Messages name the input ("the image
bytes", or the file), never a Python object.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .convert import planar_to_interleaved, to_rgb, to_uint8

# What Pillow and tifffile raise on damaged or truncated bytes (tifffile lets struct.error through on a TIFF
# cut short inside its first header): each becomes a one-line refusal, never a server error.
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, KeyError, IndexError, EOFError,
                 RuntimeError, struct.error, zlib.error, Image.DecompressionBombError)

FORMATS = ("PNG", "JPEG", "TIFF")  # what the docs list; anything else is refused before a decoder sees it
MAX_SAMPLES = 4  # grayscale, gray + alpha, RGB, RGBA (CMYK JPEG)
MAX_BITS = 16
TIFF_COMPRESSIONS = {1: "none", 8: "Deflate", 32946: "Deflate"}
MAX_SEGMENT_PIXELS = 1 << 20  # a strip or tile may exceed the image (padding), up to this many pixels

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
          (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF"))
# Named in refusals so the sender learns what they sent.
_OTHERS = ((b"BM", "BMP"), (b"GIF8", "GIF"), (b"%!PS", "PostScript/EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"),
           (b"%PDF", "PDF"), (b"RIFF", "RIFF (WebP?)"), (b"\x00\x00\x00\x0cjP", "JPEG 2000"), (b"\x00\x00\x01\x00", "ICO"))
_CONVERT_TO_RGB = ("P", "PA", "CMYK", "YCbCr", "LA", "1")
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # IHDR colour type -> samples per pixel


class ImageRequestError(ValueError):
    """The request's image bytes are not an image this model takes (a client error)."""


@dataclass(frozen=True)
class Header:
    """What an encoded image's header says, before any pixel is decoded."""

    format: str
    height: int
    width: int
    samples: int = 1
    bits: int = 8
    frames: int = 1  # animation frames or TIFF pages: more than one is refused


def sniff(head: bytes) -> str:
    """The format from the first bytes: PNG, JPEG or TIFF; ImageRequestError naming anything else."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    other = next((name for magic, name in _OTHERS if head.startswith(magic)), None)
    if other:
        raise ImageRequestError(f"a {other} file; only {', '.join(FORMATS[:-1])} and {FORMATS[-1]} are accepted")
    raise ImageRequestError(f"not a PNG, JPEG or TIFF image (first bytes {head[:8].hex() or 'none: empty'})")


def check_header(header: Header, min_size: int = 1, max_pixels: int = 0, *, max_bits: int = MAX_BITS) -> None:
    """Refuse what the header already shows to be out of bounds: ImageRequestError."""
    height, width = header.height, header.width
    if header.frames > 1:
        held = "more than one page or slice" if header.format == "TIFF" else f"{header.frames} frames (an animation)"
        raise ImageRequestError(f"{header.format} holds {held}; one image per request: send each as its own image")
    if header.samples > MAX_SAMPLES or header.bits > max_bits:
        raise ImageRequestError(f"{header.format} of {header.samples} samples x {header.bits} bits per pixel; "
                                f"expected at most {MAX_SAMPLES} samples (gray, RGB, RGBA) of at most {max_bits} bits")
    if min(height, width) < min_size:
        raise ImageRequestError(f"image is {height}x{width}; height and width must be >= {min_size}")
    if max_pixels and height * width > max_pixels:
        raise ImageRequestError(f"image is {height}x{width} = {height * width} pixels; this model's limit is "
                                f"max_pixels={max_pixels}")


def _reason(exc: BaseException, name: str) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _OBJECT_REPR.sub(name, text)


def _tiff_header(tif) -> Header:
    """The first page's header; frames is 1, or 2 for 'more than one' page or slice (the IFD chain is not
    walked further than the second page)."""
    page = tif.pages.first
    frames = 2 if tif.pages.is_multipage or page.imagedepth > 1 else 1
    return Header("TIFF", page.imagelength, page.imagewidth, page.samplesperpixel, page.bitspersample, frames)


def _check_tiff_segments(page, data: bytes) -> None:
    """Compression on the list, segments no larger than the image, Deflate segments inflating within bounds."""
    if page.compression not in TIFF_COMPRESSIONS:
        raise ImageRequestError(f"TIFF compression {page.compression} is not accepted; send an uncompressed or "
                                "Deflate TIFF, a PNG or a JPEG")
    if page.dtype is None:
        raise ImageRequestError(f"TIFF sample format {page.sampleformat} of {page.bitspersample} bits is not supported")
    interleaved = page.planarconfig == 1 and page.samplesperpixel > 1  # chunks end with the samples
    segment_pixels = math.prod(page.chunks[:-1] if interleaved else page.chunks)
    if segment_pixels > max(page.imagelength * page.imagewidth, MAX_SEGMENT_PIXELS):
        raise ImageRequestError(f"TIFF strips or tiles of {'x'.join(map(str, page.chunks))} are larger than the image "
                                f"({page.imagelength}x{page.imagewidth})")
    if page.compression == 1:
        return
    expected = math.prod(page.chunks) * page.dtype.itemsize
    for offset, count in zip(page.dataoffsets, page.databytecounts):
        inflated = zlib.decompressobj().decompress(data[offset:offset + count], expected + 1)
        if len(inflated) > expected:
            raise ImageRequestError(f"a Deflate TIFF segment inflates beyond the {expected} bytes its header "
                                    "declares")


def _decode_tiff(data: bytes, min_size: int, max_pixels: int) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        check_header(_tiff_header(tif), min_size, max_pixels)
        _check_tiff_segments(tif.pages.first, data)
        return planar_to_interleaved(tif.pages.first.asarray(maxworkers=1))


def _decode_pillow(data: bytes, kind: str, min_size: int, max_pixels: int) -> np.ndarray:
    """PNG/JPEG through Pillow (that one plugin only), header checked, then the EXIF orientation applied."""
    with Image.open(io.BytesIO(data), formats=[kind]) as img:
        check_header(pillow_header(img, data[:32]), min_size, max_pixels)
        img.load()
        img = ImageOps.exif_transpose(img)  # after load: a PNG's EXIF may follow its pixels
        return np.asarray(img.convert("RGB") if img.mode in _CONVERT_TO_RGB else img)


def pillow_header(img: Image.Image, head: bytes) -> Header:
    """The header of a PNG or JPEG that Pillow opened (nothing decoded yet). An MPO JPEG counts as one
    image: its primary image is the picture, the others are previews or a stereo partner."""
    if img.format == "PNG":
        bits, samples = head[24], _PNG_SAMPLES.get(head[25], 4)
        frames = getattr(img, "n_frames", 1)
    else:
        bits, samples, frames = getattr(img, "bits", 8), len(img.getbands()), 1
    return Header("JPEG" if img.format == "MPO" else img.format, img.height, img.width, samples, bits, frames)


def decode_image(data: bytes, min_size: int = 1, max_pixels: int = 0) -> np.ndarray:
    """PNG/JPEG/TIFF bytes -> uint8 RGB (H, W, 3), EXIF orientation applied; the header is checked first."""
    name = "the image bytes"
    try:
        kind = sniff(bytes(data[:16]))
    except ImageRequestError as exc:
        raise ImageRequestError(f"cannot decode {name}: {exc}") from None
    try:
        array = _decode_tiff(data, min_size, max_pixels) if kind == "TIFF" else \
            _decode_pillow(data, kind, min_size, max_pixels)
    except ImageRequestError:
        raise
    except DECODE_ERRORS as exc:
        raise ImageRequestError(f"cannot decode {name} ({_reason(exc, name)})") from None
    try:
        return to_rgb(to_uint8(array))
    except ValueError as exc:
        raise ImageRequestError(str(exc)) from None


def read_header(path: str | os.PathLike, *, max_bits: int = MAX_BITS) -> Header:
    """A file's header, by its content (not its suffix); ImageRequestError for formats outside FORMATS,
    several pages or frames, or too many samples or bits. The file's own readers decode it afterwards."""
    with open(path, "rb") as handle:
        kind = sniff(handle.read(32))
        handle.seek(0)
        head = handle.read(32)
    if kind == "TIFF":
        import tifffile

        with tifffile.TiffFile(path) as tif:
            header = _tiff_header(tif)
    else:
        with Image.open(path, formats=[kind]) as img:
            header = pillow_header(img, head)
    check_header(header, max_bits=max_bits)
    return header


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
