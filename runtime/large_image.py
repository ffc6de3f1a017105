"""One image, tile by tile, from file to mask file, in memory that depends on the tile, not the image.

The image is read band by band (lazily for TIFFs), the blended logits of each band become mask rows at
once, and the mask is written as it comes: a tiled TIFF above `TIFF_ABOVE_PIXELS`, else a PNG. The
overlay is a second pass over the image and the written mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gsam.data.bigimage import TIFF_ABOVE_PIXELS, TiffRows, open_rows, write_tiled_tiff
from gsam.data.imageio import save_png
from gsam.pixels.masks import logits_to_mask, mask_dtype, overlay

from .backends.tiled import TiledSegmenter

OVERLAY_BAND = 512  # rows per step of the overlay pass


def predict_tiled(segmenter: TiledSegmenter, path: Path, mask_stem: Path, overlay_stem: Path | None,
                  palette: np.ndarray, *, alpha: float = 0.5, max_image_pixels: int | None = None) -> Path:
    """Write mask_stem.(png|tif) and overlay_stem.(png|tif); returns the mask's path."""
    reader = open_rows(path, max_image_pixels)
    height, width = reader.height, reader.width
    dtype = mask_dtype(segmenter.facts.num_classes)
    try:
        bands = ((y, logits_to_mask(logits[None])[0].astype(dtype))
                 for y, logits in segmenter.blended_rows(lambda y0, y1: reader.read_rows(y0, y1).transpose(2, 0, 1),
                                                          height, width))
        if height * width <= TIFF_ABOVE_PIXELS:
            mask = np.concatenate([rows for _, rows in bands])
            save_png(mask, mask_stem.with_suffix(".png"))
            if overlay_stem is not None:
                save_png(overlay(reader.read_rows(0, height), mask, palette, alpha), overlay_stem.with_suffix(".png"))
            return mask_stem.with_suffix(".png")
        mask_path = mask_stem.with_suffix(".tif")
        write_tiled_tiff(mask_path, bands, height, width, dtype=dtype)
        if overlay_stem is not None:
            masks = TiffRows(mask_path, rgb=False)
            try:
                write_tiled_tiff(overlay_stem.with_suffix(".tif"),
                                 ((y, overlay(reader.read_rows(y, min(y + OVERLAY_BAND, height)),
                                              masks.read_rows(y, min(y + OVERLAY_BAND, height)), palette, alpha))
                                  for y in range(0, height, OVERLAY_BAND)), height, width, channels=3)
            finally:
                masks.close()
        return mask_path
    finally:
        reader.close()
