"""The request bound of a served model: a fixed default, or one derived from a memory budget.

onnxruntime's peak memory grows linearly with the pixels of a request (activations scale
with H x W): the tiny model's python-backend stub reached 5 GB resident on a 4096x4096
request, about 300 bytes per pixel. DEFAULT_MAX_PIXELS (2048x2048) keeps that model near
1.3 GB per request. With a budget, two short runs in fresh processes at two sizes give this
model's slope in bytes per pixel; `max_pixels` = (budget - fixed cost) / slope, rounded
down to a multiple of 1024. A separate process per run, so each sees only its own peak.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ...errors import GSAMError

DEFAULT_MAX_PIXELS = 2048 * 2048
PROBE_SIDES = (256, 512)

_PROBE = r"""
import json, resource, sys
import numpy as np, onnxruntime as ort
path, side = sys.argv[1], int(sys.argv[2])
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
session.run(["mask"], {"image": np.zeros((1, 3, side, side), np.float32)})
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"loaded": before * 1024, "peak": after * 1024}))
"""


def peak_memory(onnx_path: str | Path, side: int) -> dict[str, int]:
    """Peak resident bytes of one onnxruntime run at side x side (and after loading only)."""
    done = subprocess.run([sys.executable, "-c", _PROBE, str(onnx_path), str(side)], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise GSAMError(f"{onnx_path}: cannot measure the model's memory use ({reason[:200]})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bytes_per_pixel(onnx_path: str | Path, sides: tuple[int, int] = PROBE_SIDES) -> tuple[float, int]:
    """(slope in bytes per pixel, fixed bytes) of peak memory against pixels."""
    small, large = (peak_memory(onnx_path, s) for s in sides)
    slope = max(1.0, (large["peak"] - small["peak"]) / (sides[1] ** 2 - sides[0] ** 2))
    return slope, int(large["peak"] - slope * sides[1] ** 2)


def max_pixels_for(budget_bytes: int, slope: float, fixed: int) -> int:
    return max(0, int((budget_bytes - fixed) / slope)) // 1024 * 1024


def max_pixels_within(onnx_path: str | Path, budget_bytes: int) -> int:
    """The largest request (in pixels) whose measured peak memory stays within the budget."""
    slope, fixed = bytes_per_pixel(onnx_path)
    pixels = max_pixels_for(budget_bytes, slope, fixed)
    if pixels <= 0:
        raise GSAMError(f"--memory-budget {budget_bytes} bytes is below this model's fixed cost ({fixed} bytes)")
    return pixels
