"""The per-image pipeline every caller shares: `gsam.load(target).predict(image)`, `gsam predict`, `gsam demo`,
`gsam eval` and `gsam compare`.

    predictor = load("runs/demo")                      # or model.onnx, model.plan, http://host:8000/gsam_image
    result = predictor.predict("photo.png")            # path, bytes, PIL image or uint8 (H, W, 3) array
    result.mask                                        # class ids at the image's native size
    result.save("out")                                 # out/masks/photo.png, out/overlays/photo.png

An image above the tiling threshold (`tile_above`, default: what half the free memory holds for this
model) runs in overlapping tiles, read band by band; a backend that takes encoded bytes (gsam_image)
gets the file's own bytes and the server bounds, decodes and tiles them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from gsam.errors import GSAMError
from gsam.model.segmenter import Segmenter, to_model_input
from gsam.pixels.masks import logits_to_mask, logits_to_probabilities, mask_dtype

from .backends.tiled import DEFAULT_OVERLAP, TiledSegmenter
from .image_source import ImageSource, image_source
from .prediction import Prediction, predict_tiled
from .targets import open_segmenter


class Predictor:
    """A backend plus the bounds around it: the tiling threshold, the tile, the decoder's pixel limit."""

    def __init__(self, segmenter: Segmenter, *, tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
                 tile_above: int | None = None, max_image_pixels: int | None = None, alpha: float = 0.5) -> None:
        from .memory import default_tile, default_tile_above

        self.segmenter, self.facts, self.name = segmenter, segmenter.facts, segmenter.name
        self.max_image_pixels, self.alpha = max_image_pixels, alpha
        self.notes: list[str] = []  # what was chosen for the caller to print (amp, tiling threshold)
        choice = getattr(segmenter, "amp_choice", None)
        if choice is not None:
            self.notes += [line for line in (choice.line(), choice.warning) if line]
        if tile_above is None and tile is None and not segmenter.takes_encoded:
            tile_above, how = default_tile_above(self.facts.model_name)
            self.notes.append(f"--tile-above {tile_above} ({how}); larger images are tiled")
        tile_side = tile or default_tile(tile_above or 0, self.facts.min_size)
        if not tile and overlap >= tile_side:  # automatic tiles smaller than the default overlap
            overlap = tile_side // 4
        self.tiled = TiledSegmenter(segmenter, tile_side, overlap) if not segmenter.takes_encoded else None
        self.tile_above = 0 if tile else (tile_above or 0)
        self.palette = np.array(self.facts.colours, dtype=np.uint8)
        self._written: set[str] = set()

    def _unique(self, name: str) -> str:
        """Two images of one stem (from two folders) get two files: the later one's name gains '_'."""
        while name in self._written:
            name += "_"
        self._written.add(name)
        return name

    def _source(self, image, name: str | None) -> ImageSource:
        source = image_source(image, self.max_image_pixels, name)
        if min(source.height, source.width) < self.facts.min_size:
            raise GSAMError(f"{source.path or source.name}: image {source.height}x{source.width} is below the model's "
                            f"minimum side of {self.facts.min_size} pixels")
        return source

    def tiles(self, source: ImageSource) -> bool:
        """Whether this image runs in tiles (never for a backend that takes encoded bytes: the server tiles)."""
        return self.tiled is not None and source.pixel_count > self.tile_above

    def predict(self, image, *, logits: bool = False, probabilities: bool = False,
                name: str | None = None) -> Prediction:
        """One image -> Prediction (mask at native size; logits and probabilities (C, H, W) when asked)."""
        return self._predict_source(self._source(image, name), logits=logits, probabilities=probabilities)

    def _predict_source(self, source: ImageSource, *, logits: bool = False, probabilities: bool = False) -> Prediction:
        if self.segmenter.takes_encoded:
            if logits or probabilities:
                raise GSAMError(f"{self.name}: the server answers masks only; load the tensor model for logits")
            mask = self.segmenter.segment_encoded(source.encoded())
            return self._result(source, mask, None, False, image=_decoded(source))  # as the server saw it
        if self.tiles(source):
            reader = source.rows()
            try:
                bands = self.tiled.blended_rows(lambda y0, y1: reader.read_rows(y0, y1).transpose(2, 0, 1),
                                                source.height, source.width)
                scores = np.concatenate([band for _, band in bands], axis=1)
            finally:
                reader.close()
            return self._result(source, logits_to_mask(scores[None])[0], scores if logits or probabilities else None,
                                True, probabilities=probabilities, keep_logits=logits)
        outputs = self.segmenter(to_model_input(source.rgb()))
        scores = outputs.get("logits")
        if (logits or probabilities) and scores is None:
            raise GSAMError(f"{self.name}: this backend returns masks only")
        return self._result(source, outputs["mask"][0], scores[0] if logits or probabilities else None, False,
                            probabilities=probabilities, keep_logits=logits)

    def _result(self, source: ImageSource, mask: np.ndarray, scores, tiled: bool, *, image=None,
                probabilities: bool = False, keep_logits: bool = False) -> Prediction:
        return Prediction(source.name, mask.astype(mask_dtype(self.facts.num_classes)),
                          source.rgb() if image is None else image, self.palette, self.alpha,
                          logits=scores if keep_logits else None,
                          probabilities=logits_to_probabilities(scores, axis=0) if probabilities else None,
                          tiled=tiled)

    def predict_many(self, images: Iterable, **options) -> Iterator[Prediction]:
        """Predictions one at a time, in order, holding one image at a time."""
        for image in images:
            yield self.predict(image, **options)

    def write(self, image, out: str | Path, name: str | None = None) -> str | None:
        """Segment one image straight to OUT/masks and OUT/overlays; above the threshold the image is read and
        the mask written band by band, so memory depends on the tile. Returns a note for the log, if any."""
        source = self._source(image, name)
        source.name = self._unique(source.name)
        if not self.tiles(source) or source.path is None:
            self._predict_source(source).save(out)
            return None
        out = Path(out)
        for sub in ("masks", "overlays"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        predict_tiled(self.tiled, source.path, out / "masks" / source.name, out / "overlays" / source.name,
                      self.palette, alpha=self.alpha, max_image_pixels=self.max_image_pixels)
        if self.tile_above:
            return (f"{source.path}: {source.height}x{source.width} is above --tile-above {self.tile_above}: "
                    f"tiles of {self.tiled.tiles.size} overlapping by {self.tiled.tiles.overlap}")
        return None

    def close(self) -> None:
        self.segmenter.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decoded(source: ImageSource) -> np.ndarray:
    from gsam.pixels.codec import decode_image

    return decode_image(source.encoded())


def load(target, backend: str | None = None, *, triton_model: str | None = None, device: str = "auto",
         amp: str = "auto", timeout: float = 600.0, tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
         tile_above: int | None = None, max_image_pixels: int | None = None, alpha: float = 0.5,
         command: str = "gsam.load") -> Predictor:
    """A Predictor for a run directory, .pt, .onnx, .plan, or a Triton URL ("http://host:8000/gsam_image",
    "grpc://host:8001", or host:port with `triton_model`); `backend` overrides the choice by kind."""
    options = {"device": device, "amp": amp, "timeout": timeout}
    segmenter = open_segmenter(target, backend, command=command, triton_model=triton_model, **options)
    try:
        return Predictor(segmenter, tile=tile, overlap=overlap, tile_above=tile_above,
                         max_image_pixels=max_image_pixels, alpha=alpha)
    except BaseException:
        segmenter.close()
        raise
