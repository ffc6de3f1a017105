"""Memory per pixel: how many pixels one forward pass may take, here or in a served request.

A forward pass's peak memory grows linearly with its pixels (pooled attention), so a model's
cost is two numbers, `PixelCost(fixed, per_pixel)`: resident bytes after loading, and the
growth per input pixel. They come from a measurement (`measure_cost`: two short onnxruntime
runs in fresh processes, resident memory sampled during each) or, for the registry models,
from the table of earlier measurements (`known_cost`). Every budget in gsam is computed here:
`gsam predict`'s automatic tiling threshold and `gsam triton build --memory-budget`; the pods'
memory limit that `gsam triton k8s` writes from these costs is gsam/deploy/k8s/pod_memory.py.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gsam.errors import GSAMError

PROBE_SIDES = (256, 512)
MEMORY_FRACTION = 0.5  # `gsam predict` leaves half of what is free to the rest of the machine
DEFAULT_TILE = 1024


@dataclass(frozen=True)
class PixelCost:
    fixed: int  # resident bytes with the model loaded
    per_pixel: float  # peak resident bytes added per input pixel
    measured: bool = True

    def pixels_within(self, budget_bytes: int) -> int:
        """The most pixels whose peak stays within the budget, rounded down to a multiple of 1024."""
        return max(0, int((budget_bytes - self.fixed) / self.per_pixel)) // 1024 * 1024


# Peak resident bytes per input pixel above the loaded model, onnxruntime CPU, fp32, batch 1: the slope of
# peak RSS between 512x512 and 1024x1024 inputs (benchmarks/tiling.py --memory).
_MEASURED_PER_PIXEL = {"tiny": 300, "vit_b": 1300}
_UNMEASURED_PER_PIXEL = 4000  # vit_l / vit_h, not measured: a cautious guess, three times vit_b


def known_cost(model_name: str) -> PixelCost:
    """The table's cost of a registry model (fixed cost not tabled: 0)."""
    if model_name in _MEASURED_PER_PIXEL:
        return PixelCost(0, _MEASURED_PER_PIXEL[model_name])
    return PixelCost(0, _UNMEASURED_PER_PIXEL, measured=False)


_PROBE = r"""
import json, os, sys, threading
import numpy as np, onnxruntime as ort
path, side = sys.argv[1], int(sys.argv[2])
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
image = np.zeros((1, 3, side, side), np.float32)
before, peak, done = rss(), [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        done.wait(0.001)
sampler = threading.Thread(target=sample)
sampler.start()
session.run(["mask"], {"image": image})
done.set()
sampler.join()
print(json.dumps({"loaded": before, "peak": max(peak[0], rss())}))
"""


def peak_memory(onnx_path: str | Path, side: int) -> dict[str, int]:
    """Resident bytes after loading, and the peak sampled during one onnxruntime run at side x side."""
    from gsam.child import python_code

    done = subprocess.run(python_code(_PROBE, str(onnx_path), str(side)), capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise GSAMError(f"{onnx_path}: cannot measure the model's memory use ({reason[:200]})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_cost(onnx_path: str | Path, sides: tuple[int, int] = PROBE_SIDES) -> PixelCost:
    """This model's cost in onnxruntime on this machine, from runs at two sizes."""
    small, large = (peak_memory(onnx_path, s) for s in sides)
    growth = [m["peak"] - m["loaded"] for m in (small, large)]
    per_pixel = max(1.0, (growth[1] - growth[0]) / (sides[1] ** 2 - sides[0] ** 2))
    return PixelCost(int(large["peak"] - per_pixel * sides[1] ** 2), per_pixel)


_MEASURED: dict[str, PixelCost] = {}


def measured_cost(onnx_path: str | Path) -> PixelCost:
    """measure_cost, once per ONNX file content in this process (manifests for several models share it)."""
    from gsam.io import sha256_file

    key = sha256_file(onnx_path)
    if key not in _MEASURED:
        _MEASURED[key] = measure_cost(onnx_path)
    return _MEASURED[key]


def max_pixels_within(onnx_path: str | Path, budget_bytes: int) -> int:
    """The largest request (in pixels) whose measured peak memory stays within the budget."""
    cost = measure_cost(onnx_path)
    pixels = cost.pixels_within(budget_bytes)
    if pixels <= 0:
        raise GSAMError(f"--memory-budget {budget_bytes} bytes is below this model's fixed cost ({cost.fixed} bytes)")
    return pixels


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


def default_tile_above(model_name: str) -> tuple[int, str]:
    """`gsam predict`'s automatic tiling threshold: (pixels, a sentence saying where it came from)."""
    cost = known_cost(model_name)
    free = available_memory()
    if not free:
        pixels = 4096 * 4096
        return pixels, f"{pixels / 1e6:.1f} MP (free memory unknown)"
    pixels = int(free * MEMORY_FRACTION / cost.per_pixel)
    how = "measured" if cost.measured else "assumed"
    return pixels, (f"{pixels / 1e6:.1f} MP = {MEMORY_FRACTION:.0%} of {free / 2**30:.1f} GiB available / "
                    f"{cost.per_pixel:.0f} B per pixel ({how} for {model_name or 'this model'})")


def default_tile(max_pixels: int, min_size: int, multiple: int = 64) -> int:
    """The tile side for automatic tiling: 1024, or smaller when a 1024 tile would not fit the budget."""
    side = min(DEFAULT_TILE, int(math.sqrt(max(max_pixels, 1))) // multiple * multiple)
    return max(side, min_size)
