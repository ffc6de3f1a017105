"""Any backend, tile by tile: images larger than the model (or the memory) in overlapping tiles.

    segmenter = TiledSegmenter(load_backend("onnxruntime", "model.onnx"), tile=1024, overlap=128)
    segmenter(images)                                   # same outputs as the wrapped backend
    for y, logits in segmenter.blended_rows(read_rows, height, width): ...   # band by band, bounded memory
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from gsam.errors import GSAMError
from gsam.model.segmenter import Segmenter
from gsam.pixels import tiling

DEFAULT_OVERLAP = 128


def backend_batch_size(segmenter: Segmenter, tile_shape: tuple[int, int]) -> int:
    """Tiles per call: the largest batch one of the backend's shape profiles accepts at this tile shape, else 1."""
    sizes = [p.max[0] for p in segmenter.profiles if p.contains((p.min[0], 3, *tile_shape))]
    return max(sizes, default=1)


class TiledSegmenter(Segmenter):
    def __init__(self, inner: Segmenter, tile: int, overlap: int = DEFAULT_OVERLAP, *, batch_size: int | None = None,
                 window: str = "linear") -> None:
        try:
            self.tiles = tiling.Tiles(tile, overlap, inner.facts.min_size, window)
        except ValueError as exc:
            raise GSAMError(f"--tile {tile} --overlap {overlap}: {exc}") from None
        self.inner, self.batch_size = inner, batch_size
        self.facts, self.name = inner.facts, inner.name

    def _batch(self, height: int, width: int) -> int:
        return self.batch_size or backend_batch_size(self.inner, self.tiles.shape(height, width))

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        return self.inner(batch)["logits"]

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        height, width = images.shape[2:]
        if self.tiles.fits(height, width):
            return self.inner(images)  # one tile: exactly the whole-image result, the backend's own mask
        return tiling.segment_tiled(self._logits, images, self.tiles, batch_size=self._batch(height, width))

    def blended_rows(self, read_rows, height: int, width: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, logits [C, rows, width]) bands of one image; see tiling.iter_blended_rows."""
        if min(height, width) < self.facts.min_size:
            raise GSAMError(f"image {height}x{width} is below the model's minimum side of {self.facts.min_size} pixels")
        return tiling.iter_blended_rows(self._logits, read_rows, height, width, self.tiles,
                                        batch_size=self._batch(height, width))

    def close(self) -> None:
        self.inner.close()
