"""One image's result: the class-id mask at the image's native size, logits or probabilities when asked
for, and `save(dir)` writing DIR/masks/NAME and DIR/overlays/NAME as `gsam predict` does."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gsam.data.bigimage import TIFF_ABOVE_PIXELS, write_tiled_tiff
from gsam.data.imageio import save_png
from gsam.errors import GSAMError
from gsam.pixels.masks import overlay

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
