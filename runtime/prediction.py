"""One image's result: the class-id mask at the image's native size, logits or probabilities when asked
for, and `save(dir)` writing DIR/masks/NAME and DIR/overlays/NAME as `gsam predict` does; and the same
files for an image too large to hold, written tile by tile (`predict_tiled`): the image is read band by
band (lazily for TIFFs), the blended logits of each band become mask rows at once, and the mask is written
as it comes, a tiled TIFF above TIFF_ABOVE_PIXELS; the overlay is a second pass over image and mask."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gsam.data.imageio import save_png
from gsam.data.large_image import TIFF_ABOVE_PIXELS, TiffRows, open_rows, write_tiled_tiff
from gsam.errors import GSAMError
from gsam.pixels.masks import logits_to_mask, mask_dtype, overlay

from .backends.tiled import TiledSegmenter

BAND = 512  # rows per step when a large mask or overlay is written as a tiled TIFF


@dataclass
class Prediction:
    name: str  # the file's stem, or "image" for pixels and bytes
    mask: np.ndarray  # class ids (H, W), uint8 (uint16 above 256 classes), the image's native size
    image: np.ndarray = field(repr=False)  # uint8 (H, W, 3): what the model saw, for the overlay
    palette: np.ndarray = field(repr=False)
    alpha: float = 0.5
    logits: np.ndarray | None = field(default=None, repr=False)  # float32 (C, H, W), when asked for
    probabilities: np.ndarray | None = field(default=None, repr=False)  # float32 (C, H, W), when asked for
    tiled: bool = False  # computed in overlapping tiles

    def overlay(self) -> np.ndarray:
        """Class colours blended over the image (background left as it is), uint8 (H, W, 3)."""
        return overlay(self.image, self.mask, self.palette, self.alpha)

    def save(self, out: str | Path, name: str | None = None) -> tuple[Path, Path]:
        """Write OUT/masks/NAME.png and OUT/overlays/NAME.png (tiled TIFFs above 16.8 megapixels);
        returns the two paths."""
        out, name = Path(out), name or self.name
        try:
            for sub in ("masks", "overlays"):
                (out / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GSAMError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
        height, width = self.mask.shape
        if height * width <= TIFF_ABOVE_PIXELS:
            paths = out / "masks" / f"{name}.png", out / "overlays" / f"{name}.png"
            save_png(self.mask, paths[0])
            save_png(self.overlay(), paths[1])
            return paths
        paths = out / "masks" / f"{name}.tif", out / "overlays" / f"{name}.tif"
        rows = range(0, height, BAND)
        write_tiled_tiff(paths[0], ((y, self.mask[y:y + BAND]) for y in rows), height, width, dtype=self.mask.dtype)
        write_tiled_tiff(paths[1], ((y, overlay(self.image[y:y + BAND], self.mask[y:y + BAND], self.palette,
                                                self.alpha)) for y in rows), height, width, channels=3)
        return paths


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
                                 ((y, overlay(reader.read_rows(y, min(y + BAND, height)),
                                              masks.read_rows(y, min(y + BAND, height)), palette, alpha))
                                  for y in range(0, height, BAND)), height, width, channels=3)
            finally:
                masks.close()
        return mask_path
    finally:
        reader.close()
