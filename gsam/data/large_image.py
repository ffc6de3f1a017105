"""Images larger than memory: read rows lazily, write results tile by tile.

Reading: an uncompressed, contiguous TIFF is memory-mapped; a stripped or tiled TIFF (compressed or
not) is read one band of rows at a time by decoding only the strips/tiles that the band touches
(tifffile's segment reader, no zarr needed). Other formats are decoded whole, under Pillow's
decompression-bomb limit. Writing: masks and overlays above `TIFF_ABOVE_PIXELS` go to a tiled,
zlib-compressed TIFF fed band by band; smaller ones to PNG.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Iterable

import numpy as np

from ..io import atomic_path
from ..pixels.convert import to_uint8
from .imageio import ImageReadError, _reason, as_rgb, read_image

TIFF_SUFFIXES = (".tif", ".tiff")
TIFF_ABOVE_PIXELS = 1 << 24  # 16.8 megapixels (4096 x 4096): larger outputs are written as tiled TIFFs
TIFF_TILE = 256
# What tifffile raises on truncated or damaged files.
_TIFF_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, RuntimeError, zlib.error)


class ArrayRows:
    """An image already in memory, behind the row-reader interface."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.height, self.width = image.shape[:2]

    def read_rows(self, y0: int, y1: int) -> np.ndarray:
        return self.image[y0:y1]

    def close(self) -> None:
        pass


class TiffRows:
    """Rows of the first page of a TIFF, decoded on demand: uint8 RGB (rows, width, 3), or as stored (`rgb=False`)."""

    def __init__(self, path: Path, rgb: bool = True) -> None:
        import tifffile

        self.path, self.rgb = path, rgb
        self.tif = tifffile.TiffFile(path)
        page = self.page = self.tif.pages.first
        self.separate = page.planarconfig == 2 and page.samplesperpixel > 1
        self.height, self.width = (page.shape[1], page.shape[2]) if self.separate else page.shape[:2]
        self.memmap = page.is_memmappable and page.is_contiguous
        if self.memmap:
            self.array = self.tif.asarray(out="memmap")

    def _segments(self, y0: int, y1: int) -> np.ndarray:
        """Decode the strips/tiles that rows y0..y1 touch into (samples, rows, width)."""
        page = self.page
        chunk_h, chunk_w = page.chunks[-3:-1] if page.samplesperpixel > 1 and not self.separate else page.chunks[-2:]
        across = -(-self.width // chunk_w)
        down = -(-self.height // chunk_h)
        samples = page.samplesperpixel
        out = np.zeros((samples, y1 - y0, self.width), dtype=page.dtype)
        planes = range(samples) if self.separate else range(1)
        indices = [(p * down + r) * across + c for p in planes
                   for r in range(y0 // chunk_h, -(-y1 // chunk_h)) for c in range(across)]
        handle = self.tif.filehandle
        for data, index in handle.read_segments([page.dataoffsets[i] for i in indices],
                                                [page.databytecounts[i] for i in indices], indices=indices):
            segment, (plane, _, y, x, _), _ = page.decode(data, index)
            segment = segment[0]  # (h, w, samples in this segment)
            top, bottom = max(y, y0), min(y + segment.shape[0], y1, self.height)
            right = min(x + segment.shape[1], self.width)
            if bottom <= top:
                continue
            block = np.moveaxis(segment[top - y:bottom - y, :right - x], -1, 0)
            if self.separate:
                out[plane, top - y0:bottom - y0, x:right] = block[0]
            else:
                out[:, top - y0:bottom - y0, x:right] = block
        return out

    def read_rows(self, y0: int, y1: int) -> np.ndarray:
        try:
            if self.memmap:
                rows = self.array[:, y0:y1] if self.separate else self.array[y0:y1]
                rows = np.moveaxis(rows, 0, -1) if self.separate else rows
            else:
                rows = np.moveaxis(self._segments(y0, y1), 0, -1)
                rows = rows[..., 0] if rows.shape[-1] == 1 else rows
            return as_rgb(to_uint8(np.asarray(rows)), self.path) if self.rgb else np.asarray(rows)
        except _TIFF_ERRORS as exc:
            raise ImageReadError(f"{self.path}: cannot read rows {y0}..{y1} ({_reason(exc)})") from None

    def close(self) -> None:
        self.tif.close()


def lazy_tiff_ok(path: Path) -> bool:
    """Can this TIFF be read band by band? Integer samples, one image (not a volume), gray/RGB/RGBA."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        return page.dtype is not None and page.dtype.kind in "ui" and page.imagedepth == 1 and \
            page.samplesperpixel in (1, 3, 4) and len(page.shape) in (2, 3)


def open_rows(path: str | Path, max_image_pixels: int | None = None):
    """A row reader (`height`, `width`, `read_rows(y0, y1)` -> uint8 RGB, `close()`) for any image file."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        try:
            if lazy_tiff_ok(path):
                return TiffRows(path)
        except _TIFF_ERRORS as exc:
            raise ImageReadError(f"{path}: cannot read image ({_reason(exc)})") from None
    return ArrayRows(read_image(path, max_image_pixels))


def write_tiled_tiff(path: str | Path, bands: Iterable[tuple[int, np.ndarray]], height: int, width: int, *,
                     channels: int = 1, dtype=np.uint8) -> None:
    """Write (first row, rows) bands that cover the image top to bottom as a tiled, zlib TIFF, atomically.

    Only one band and one row of tiles are held at a time.
    """
    import tifffile

    def tiles():
        covered = 0
        pending = []
        for y, band in bands:
            if y != covered:
                raise ValueError(f"bands out of order: expected row {covered}, got {y}")
            covered += band.shape[0]
            pending.append(band.astype(dtype, copy=False))
            buffered = sum(len(b) for b in pending)
            while buffered >= TIFF_TILE or (covered == height and buffered):
                rows = np.concatenate(pending) if len(pending) > 1 else pending[0]
                take, rest = rows[:TIFF_TILE], rows[TIFF_TILE:]
                pending, buffered = ([rest] if len(rest) else []), len(rest)
                for x in range(0, width, TIFF_TILE):
                    tile = np.zeros((TIFF_TILE, TIFF_TILE) + take.shape[2:], dtype=dtype)
                    block = take[:, x:x + TIFF_TILE]
                    tile[:block.shape[0], :block.shape[1]] = block
                    yield tile

    shape = (height, width) + ((channels,) if channels > 1 else ())
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, tiles(), shape=shape, dtype=dtype, tile=(TIFF_TILE, TIFF_TILE), compression="zlib",
                         photometric="rgb" if channels == 3 else "minisblack")
