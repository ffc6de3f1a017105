"""Sliding-window inference in plain numpy: overlapping tiles, logits blended with a ramp window.

Part of gsam.pixels (numpy only, nothing from gsam), so the Triton python models tile with this very
code. Every entry point takes `run(batch) -> logits`: a callable from [N, 3, h, w] pixels (float32, or uint8
as read) to float32 [N, C, h, w].

Layout, per axis: the fewest tiles of at most `tile` pixels that overlap by at least `overlap`, all
of one size and spread evenly from edge to edge. GSAM takes any input size, so tiles shrink to fit
instead of the last one sliding inward over its neighbour: a 2048-pixel side with tiles of 1024 and
an overlap of 128 runs three tiles of 768, not three of 1024. A side no longer than the tile is one
tile of its own length. Each tile's logits are weighted by a window that ramps up over `overlap`
pixels on the sides that touch a neighbouring tile and is exactly 1 elsewhere, so pixels that only
one tile covers keep that tile's logits bit for bit, and an image that fits in one tile gets exactly
the whole-image result.

Memory: rows are produced band by band (`iter_blended_rows`): only the rows that the current row of
tiles covers are accumulated, C x tile x width floats, whatever the image height.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .masks import logits_to_mask

WINDOWS = ("linear", "gaussian")

Run = Callable[[np.ndarray], np.ndarray]
ReadRows = Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class Tiles:
    """How images are cut: tiles of at most `size` pixels a side overlapping by at least `overlap`, never
    smaller than `min_size` (the model's smallest side), blended with a `window` ramp. ValueError with a
    one-line reason when the settings cannot work."""

    size: int
    overlap: int = 128
    min_size: int = 1
    window: str = "linear"

    def __post_init__(self) -> None:
        if self.size < self.min_size:
            raise ValueError(f"tile {self.size} is below the model's minimum side of {self.min_size} pixels")
        if not 0 <= self.overlap < self.size:
            raise ValueError(f"overlap {self.overlap} must be at least 0 and smaller than the tile ({self.size})")
        if self.window not in WINDOWS:
            raise ValueError(f"window {self.window!r} must be one of {', '.join(WINDOWS)}")

    def layout(self, length: int) -> tuple[int, list[int]]:
        return tile_layout(length, self.size, self.overlap, self.min_size)

    def shape(self, height: int, width: int) -> tuple[int, int]:
        """(rows, columns) of every tile of an image of this size."""
        return self.layout(height)[0], self.layout(width)[0]

    def fits(self, height: int, width: int) -> bool:
        """Whether the image is one tile (then it runs whole, and its result is exactly the untiled one)."""
        return height <= self.size and width <= self.size


def tile_layout(length: int, tile: int, overlap: int, min_size: int = 1) -> tuple[int, list[int]]:
    """(tile size, start offsets) along one axis: n = the fewest tiles of at most `tile` pixels that
    overlap by at least `overlap`, each of size ceil((length + (n - 1) * overlap) / n), spread evenly.

    The size never drops below `min_size` (the model's smallest side), which only matters for tiles
    smaller than twice that."""
    if length <= tile:
        return length, [0]
    count = -(-(length - overlap) // (tile - overlap))
    size = min(tile, max(-(-(length + (count - 1) * overlap) // count), min_size))
    return size, [round(i * (length - size) / (count - 1)) for i in range(count)]


def tile_starts(length: int, tile: int, overlap: int, min_size: int = 1) -> list[int]:
    """Start offsets along one axis (see tile_layout)."""
    return tile_layout(length, tile, overlap, min_size)[1]


def _ramp(width: int, window: str) -> np.ndarray:
    """Rising weights over `width` pixels, strictly between 0 and 1."""
    position = (np.arange(width, dtype=np.float64) + 0.5) / width
    if window == "gaussian":
        return np.exp(-0.5 * ((1.0 - position) / 0.4) ** 2)
    return position


def axis_weights(start: int, size: int, length: int, overlap: int, window: str = "linear") -> np.ndarray:
    """One tile's weights along one axis: ramps only on the sides that meet another tile, 1 elsewhere."""
    weights = np.ones(size, dtype=np.float64)
    ramp = min(overlap, size)
    if ramp:
        if start > 0:
            weights[:ramp] = np.minimum(weights[:ramp], _ramp(ramp, window))
        if start + size < length:
            weights[size - ramp:] = np.minimum(weights[size - ramp:], _ramp(ramp, window)[::-1])
    return weights.astype(np.float32)


def tile_count(height: int, width: int, tile: int, overlap: int) -> int:
    return len(tile_starts(height, tile, overlap)) * len(tile_starts(width, tile, overlap))


def iter_blended_rows(run: Run, read_rows: ReadRows, height: int, width: int, tiles: Tiles, *,
                      batch_size: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first row, float32 logits [C, rows, width]) bands, top to bottom, covering the image once.

    `read_rows(y0, y1)` returns the image rows y0..y1 as [3, y1 - y0, width] (any numeric dtype); `run`
    gets the tiles in that dtype.
    """
    overlap, window = tiles.overlap, tiles.window
    (th, ys), (tw, xs) = tiles.layout(height), tiles.layout(width)
    x_weights = [axis_weights(x, tw, width, overlap, window) for x in xs]
    acc = norm = None
    base = 0  # image row of acc[:, 0]
    for index, y in enumerate(ys):
        band = read_rows(y, y + th)
        y_weight = axis_weights(y, th, height, overlap, window)[:, None]
        if acc is not None:  # keep the rows the previous tile row left unfinished, move them to the top
            keep = base + th - y
            acc[:, :keep], norm[:keep] = acc[:, y - base:], norm[y - base:]
            acc[:, keep:], norm[keep:] = 0, 0
        base = y
        for first in range(0, len(xs), batch_size):
            chunk = xs[first:first + batch_size]
            batch = np.stack([band[:, :, x:x + tw] for x in chunk])  # read_rows' dtype: uint8 stays 1 byte
            logits = np.asarray(run(np.ascontiguousarray(batch)), dtype=np.float32)
            if acc is None:
                acc = np.zeros((logits.shape[1], th, width), dtype=np.float32)
                norm = np.zeros((th, width), dtype=np.float32)
            for k, x in enumerate(chunk):
                weight = y_weight * x_weights[first + k][None, :]
                acc[:, :, x:x + tw] += logits[k] * weight
                norm[:, x:x + tw] += weight
        done = (ys[index + 1] if index + 1 < len(ys) else height) - y
        yield y, acc[:, :done] / norm[:done]


def segment_tiled(run: Run, images: np.ndarray, tiles: Tiles, *, batch_size: int = 1,
                  logits: bool = True) -> dict[str, np.ndarray]:
    """float32 [N, 3, H, W] -> {"mask": int32 [N, H, W], "logits": float32 [N, C, H, W] (if `logits`)}.

    An image that fits in one tile goes to `run` whole, so its result is exactly the untiled one.
    Without `logits` only the masks are kept, so memory stays near one band of tiles plus the masks.
    """
    n, _, height, width = images.shape
    if tiles.fits(height, width):
        whole = np.asarray(run(images), dtype=np.float32)
        return {"mask": logits_to_mask(whole, axis=1), **({"logits": whole} if logits else {})}
    masks = np.empty((n, height, width), dtype=np.int32)
    kept = None
    for i in range(n):
        for y, band in iter_blended_rows(run, lambda y0, y1: images[i, :, y0:y1], height, width, tiles,
                                         batch_size=batch_size):
            masks[i, y:y + band.shape[1]] = logits_to_mask(band, axis=0)
            if logits:
                if kept is None:
                    kept = np.empty((n, band.shape[0], height, width), dtype=np.float32)
                kept[i, :, y:y + band.shape[1]] = band
    return {"mask": masks, **({"logits": kept} if logits else {})}
