"""The request-bound contract of a served model: what one request may hold, written into a repository's
config.pbtxt by `gsam triton build` and read back, by this module only, by everything that enforces or
sizes it: the Triton-side python model, `gsam serve`'s gateway, the Kubernetes plan and `gsam tune`.

Plain Python with one default each, because the Triton-side model imports it as gsam_pixels.bounds
where no gsam is installed. A config without `max_pixels` is bounded by its engine profiles' largest
N x H x W when it has any, else by DEFAULT_MAX_PIXELS; `max_pixels` "0" means unbounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

DEFAULT_MAX_PIXELS = 2048 * 2048  # the most pixels (N x H x W) one request may hold
DEFAULT_MAX_TILED_PIXELS = 100_000_000  # with an oversize tile: the largest image one request may hold
DEFAULT_TILE_OVERLAP = 128
INPUT_DTYPES = ("float32", "uint8")
KEYS = ("max_pixels", "tile", "tile_overlap", "max_tiled_pixels", "input_dtype")


class BoundsError(ValueError):
    """A config parameter of the contract that is not what it must be."""


@dataclass(frozen=True)
class RequestBounds:
    """`max_pixels`: N x H x W of one request (0: unbounded); `tile` > 0: requests above it run in
    overlapping tiles of tile x tile, up to `max_tiled_pixels` per image; `max_batch`: Triton's
    max_batch_size (0: no batch axis); `input_dtype`: the pixels' type on the wire."""

    max_pixels: int
    tile: int = 0
    tile_overlap: int = 0
    max_tiled_pixels: int = 0
    max_batch: int = 0
    input_dtype: str = "float32"

    @classmethod
    def build(cls, max_pixels: int | None = None, tile: int = 0, overlap: int = DEFAULT_TILE_OVERLAP,
              max_tiled_pixels: int | None = None, **rest) -> RequestBounds:
        """What a builder writes: None takes this module's default, read now (not at import)."""
        if max_pixels is None:
            max_pixels = DEFAULT_MAX_PIXELS
        if max_tiled_pixels is None:
            max_tiled_pixels = DEFAULT_MAX_TILED_PIXELS
        return cls(max_pixels, tile, overlap if tile else 0, max_tiled_pixels if tile else 0, **rest)

    def parameters(self) -> dict[str, str]:
        """The config.pbtxt string parameters (max_batch is the config's own max_batch_size field)."""
        return {"max_pixels": str(self.max_pixels), "tile": str(self.tile), "tile_overlap": str(self.tile_overlap),
                "max_tiled_pixels": str(self.max_tiled_pixels), "input_dtype": self.input_dtype}

    @classmethod
    def read(cls, parameters: Mapping[str, str], max_batch: int = 0, profile_pixels: int = 0) -> RequestBounds:
        """The one reader: a config's string parameters (and max_batch_size, and the largest N x H x W of
        its engine profiles, if any) -> RequestBounds."""
        number = {key: _integer(parameters, key) for key in KEYS[:4]}
        max_pixels = number["max_pixels"]
        if max_pixels is None:
            max_pixels = profile_pixels or DEFAULT_MAX_PIXELS
        tile = number["tile"] or 0
        tiled = (number["max_tiled_pixels"] or DEFAULT_MAX_TILED_PIXELS) if tile else 0
        dtype = parameters.get("input_dtype") or "float32"
        if dtype not in INPUT_DTYPES:
            raise BoundsError(f"parameter 'input_dtype' is {dtype!r}; expected one of {', '.join(INPUT_DTYPES)}")
        return cls(max_pixels, tile, number["tile_overlap"] or 0, tiled, max(0, int(max_batch)), dtype)

    @property
    def request_pixels(self) -> int:
        """The most pixels of one image a request may carry: max_tiled_pixels when tiling, else max_pixels."""
        return max(self.max_pixels, self.max_tiled_pixels)


def _integer(parameters: Mapping[str, str], key: str) -> int | None:
    text = parameters.get(key)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise BoundsError(f"parameter {key!r} must be an integer; got {text!r}") from None
    if value < 0:
        raise BoundsError(f"parameter {key!r} must be >= 0; got {value}")
    return value
