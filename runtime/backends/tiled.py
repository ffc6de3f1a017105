"""Any backend, tile by tile: images larger than the model (or the memory) in overlapping tiles.

    segmenter = TiledSegmenter(load_backend("onnxruntime", "model.onnx"), tile=1024, overlap=128)
    segmenter(images)                                   # same outputs as the wrapped backend
    for y, logits in segmenter.blended_rows(read_rows, height, width): ...   # band by band, bounded memory
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ...errors import GSAMError
from . import tiling
from .base import Segmenter

DEFAULT_OVERLAP = 128


def backend_batch_size(segmenter: Segmenter, tile_shape: tuple[int, int]) -> int:
    """Tiles per call: the largest batch a TensorRT profile accepts at this tile shape, else 1."""
    sizes = [p.max[0] for p in getattr(segmenter, "profiles", None) or ()
             if p.contains((p.min[0], 3, *tile_shape))]
    return max(sizes, default=1)


class TiledSegmenter(Segmenter):
    def __init__(self, inner: Segmenter, tile: int, overlap: int = DEFAULT_OVERLAP, batch_size: int | None = None,
                 window: str = "linear") -> None:
        try:
            tiling.check_tiling(tile, overlap, inner.facts.min_size, window)
        except ValueError as exc:
            raise GSAMError(f"--tile {tile} --overlap {overlap}: {exc}") from None
        self.inner, self.tile, self.overlap, self.window = inner, tile, overlap, window
        self.batch_size = batch_size
        self.facts = inner.facts
        self.name = inner.name

    def _batch(self, height: int, width: int) -> int:
        shape = tiling.tile_shape(height, width, self.tile, self.overlap, self.facts.min_size)
        return self.batch_size or backend_batch_size(self.inner, shape)

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        return self.inner(batch)["logits"]

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        height, width = images.shape[2:]
        if height <= self.tile and width <= self.tile:
            return self.inner(images)  # one tile: exactly the whole-image result, the backend's own mask
        return tiling.segment_tiled(self._logits, images, self.tile, self.overlap, self._batch(height, width),
                                    self.window, min_size=self.facts.min_size)

    def blended_rows(self, read_rows, height: int, width: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, logits [C, rows, width]) bands of one image; see tiling.iter_blended_rows."""
        if min(height, width) < self.facts.min_size:
            raise GSAMError(f"image {height}x{width} is below the model's minimum side of {self.facts.min_size} pixels")
        return tiling.iter_blended_rows(self._logits, read_rows, height, width, self.tile, self.overlap,
                                        self._batch(height, width), self.window, self.facts.min_size)

    def close(self) -> None:
        self.inner.close()
