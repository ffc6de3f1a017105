"""Memory per pixel: how many pixels one forward pass may take, here or in a served request.

A forward pass's peak memory grows linearly with its pixels (pooled attention), so a model's
cost is two numbers, `PixelCost(fixed, per_pixel)`: resident bytes after loading, and the
growth per input pixel. They come from a measurement (`measure_cost`: two short onnxruntime
runs in fresh processes, resident memory sampled during each) or, for the registry models,
from the table of earlier measurements (`known_cost`). Every budget in gsam is computed here:
`gsam predict`'s automatic tiling threshold, `gsam triton build --memory-budget`, and the
memory limit of the pods `gsam triton k8s` writes (`served_memory`: the fixed costs of the server
and its models plus the largest legal request of each, as one execution of Triton holds it).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from gsam.errors import GSAMError

# The default request bound of a served model (2048 x 2048).
DEFAULT_MAX_PIXELS = 2048 * 2048
PROBE_SIDES = (256, 512)
MEMORY_FRACTION = 0.5  # `gsam predict` leaves half of what is free to the rest of the machine
DEFAULT_TILE = 1024


@dataclass(frozen=True)
class PixelCost:
    fixed: int  # resident bytes with the model loaded
    per_pixel: float  # peak resident bytes added per input pixel
    measured: bool = True

    def bytes_for(self, pixels: int) -> int:
        return int(self.fixed + self.per_pixel * pixels)

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


# -- a served model's memory: what `gsam triton k8s` writes as the pod's limit --------------------------------
# Measured with benchmarks/k8s_memory.py on the bundled Triton 2.51 (tiny, CPU, the largest legal request to
# gsam_python and gsam_image; results in docs/kubernetes.md): tritonserver alone holds about 37 MiB; each
# python-backend stub about 105 MiB before its model and 1.6 bytes per byte of ONNX file with it; a tensor
# request's peak grew by onnxruntime's own per-pixel cost plus about 3.1 (gRPC; 2.3 over HTTP) times the bytes
# of its tensors (FP32 input, logits and mask), which travel client -> tritonserver -> shared memory -> stub
# and back. The constants below round those up.
SERVER_BASE = 48 << 20
STUB_BASE = 112 << 20
MODEL_RESIDENT = 1.7  # resident bytes per byte of model file, once loaded
TENSOR_COPIES = 3.5  # copies of a tensor request's input and outputs the server holds at its peak
# gsam_image holds the decoded RGB image (3), its mask (up to 4), an overlay (3) and the PNGs' buffers (4).
ENCODED_BYTES_PER_PIXEL = 14
# Not measured here: `gsam serve`'s own process (gateway and supervisor) and, for models Triton runs itself
# (gsam_onnx, gsam_trt), the CUDA runtime's host memory. Estimates, stated as such in the notes.
GATEWAY_BASE = 128 << 20
GPU_HOST_BASE = 1 << 30
SHM_BASE = 64 << 20  # the python backend's own regions per stub, before any request
HEADROOM = 1.2  # allocator slack


@dataclass(frozen=True)
class ModelLoad:
    """What one served model costs: its files, its instances and the largest request it accepts."""

    name: str
    model_bytes: int
    num_classes: int
    max_pixels: int  # the largest whole forward pass (a request, or the tiles of a larger one)
    request_pixels: int  # the largest request: max_pixels, or max_tiled_pixels when built with --oversize-tile
    cost: PixelCost = PixelCost(0, 0.0)  # onnxruntime's, in the stub; none for models Triton runs on the GPU
    instances: int = 1
    images_per_execution: int = 1  # the dynamic batcher's max_batch_size: requests one execution holds
    encoded: bool = False  # gsam_image: encoded bytes in, PNG out
    python: bool = True  # runs in a python-backend stub (gsam_python, gsam_image)

    @property
    def tensor_bytes_per_pixel(self) -> int:
        """FP32 input, FP32 logits and an int32 mask."""
        return 12 + 4 * self.num_classes + 4

    @property
    def tiled(self) -> bool:
        return self.request_pixels > self.max_pixels


@dataclass(frozen=True)
class MemoryBound:
    """The pod's memory bound in bytes, its /dev/shm part, and each term (for notes and docs)."""

    total: int
    shm: int
    parts: dict[str, int]

    def mebibytes(self, value: int | None = None, multiple: int = 64) -> int:
        """`value` (default: total) in MiB, rounded up to a multiple of `multiple`."""
        value = self.total if value is None else value
        return -(-value // (multiple << 20)) * multiple


class _Request(NamedTuple):
    compute: int  # onnxruntime's activations for the largest whole pass, in the stub
    held: int  # the request's data as the server holds it at its peak (every copy)
    wire: int  # one copy of the request and response bodies (what `gsam serve` passes through)
    shm: int  # what passes through the python backend's shared memory


def _largest_request(model: ModelLoad) -> _Request:
    """One execution at the largest legal request, per instance."""
    compute = int(model.cost.per_pixel * model.max_pixels) if model.python else 0
    if model.encoded:
        held = ENCODED_BYTES_PER_PIXEL * model.request_pixels
        if model.tiled:  # blended band accumulators: worst case a short, wide image, one tile high
            held += 4 * (model.num_classes + 1) * model.request_pixels
        wire = 8 * model.request_pixels  # encoded bytes in (at most 3 B/px), mask and overlay PNGs out
        return _Request(compute, held, wire, wire)
    tensors = model.tensor_bytes_per_pixel * model.request_pixels * model.images_per_execution
    return _Request(compute, int(TENSOR_COPIES * tensors), tensors, tensors if model.python else 0)


def served_memory(models: list[ModelLoad], limits=None) -> MemoryBound:
    """The memory a server of these models needs at its peak: tritonserver, `gsam serve`, each instance's stub
    and model, and for each model the largest legal request (one execution of its batch) in flight at once.

    `limits` (runtime/serving/capacity.py's ServeLimits, resolved): gsam serve's caps. Then the gateway holds
    at most its body budget (inflated) and its connections' buffers, and tritonserver at most the same
    budget of request bodies waiting for an instance; without them, one request per instance is counted."""
    parts = {"tritonserver": SERVER_BASE, "gsam serve": GATEWAY_BASE}
    if limits is not None:
        parts["gsam serve"] += limits.gateway_bytes()
        parts["request bodies queued in tritonserver"] = limits.body_bytes
    shm = 0
    for model in models:
        request = _largest_request(model)
        loaded = int(MODEL_RESIDENT * model.model_bytes) + (STUB_BASE if model.python else 0)
        parts[f"{model.name} loaded"] = model.instances * loaded
        parts[f"{model.name} largest request"] = model.instances * (request.compute + request.held)
        if limits is None:
            parts["gsam serve"] += model.instances * request.wire
        if model.python:
            shm += model.instances * (request.shm + SHM_BASE)
    if any(not m.python for m in models):
        parts["CUDA host memory"] = GPU_HOST_BASE
    return MemoryBound(int(sum(parts.values()) * HEADROOM), int(shm * HEADROOM), parts)
