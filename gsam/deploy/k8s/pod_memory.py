"""A served model's memory: what `gsam triton k8s` writes as the pod's limit, from each model's measured cost
per pixel (gsam.runtime.memory) and its largest legal request (its config's request bounds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from gsam.runtime.memory import PixelCost

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
