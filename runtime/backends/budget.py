"""How many pixels one forward pass can take here: measured memory per pixel against free memory.

Memory of a forward pass grows linearly with the pixels (pooled attention), so a model's peak
resident memory per input pixel, measured once, bounds the largest image that fits. Images above
the bound are tiled instead of failing.
"""

from __future__ import annotations

import math
import os

# Peak resident bytes per input pixel above the model's fixed cost, onnxruntime CPU, fp32, batch 1:
# the slope of peak RSS between 512x512 and 1024x1024 inputs (benchmarks/tiling.py --memory).
BYTES_PER_PIXEL = {"tiny": 300, "vit_b": 1300}
UNKNOWN_MODEL_BYTES_PER_PIXEL = 4000  # vit_l / vit_h, not measured: a cautious guess, three times vit_b
MEMORY_FRACTION = 0.5  # leave half of what is free to the rest of the machine
DEFAULT_TILE = 1024


def available_memory() -> int:
    """Bytes the kernel reports as available (MemAvailable), else free pages; 0 when unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def default_max_pixels(model_name: str) -> tuple[int, str]:
    """(pixel budget for one whole-image pass, a sentence saying where it came from)."""
    per_pixel = BYTES_PER_PIXEL.get(model_name, UNKNOWN_MODEL_BYTES_PER_PIXEL)
    free = available_memory()
    if not free:
        pixels = 4096 * 4096
        return pixels, f"{pixels / 1e6:.1f} MP (free memory unknown)"
    pixels = int(free * MEMORY_FRACTION / per_pixel)
    how = "measured" if model_name in BYTES_PER_PIXEL else "assumed"
    return pixels, (f"{pixels / 1e6:.1f} MP = {MEMORY_FRACTION:.0%} of {free / 2**30:.1f} GiB available / "
                    f"{per_pixel} B per pixel ({how} for {model_name or 'this model'})")


def default_tile(max_pixels: int, min_size: int, multiple: int = 64) -> int:
    """The tile side for automatic tiling: 1024, or smaller when a 1024 tile would not fit the budget."""
    side = min(DEFAULT_TILE, int(math.sqrt(max(max_pixels, 1))) // multiple * multiple)
    return max(side, min_size)
