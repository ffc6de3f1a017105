"""The request bound of a served model: a fixed default, or one derived from a memory budget.

onnxruntime's peak memory grows linearly with the pixels of a request (activations scale
with H x W): the tiny model's python-backend stub reached 5 GB resident on a 4096x4096
request, about 300 bytes per pixel. DEFAULT_MAX_PIXELS (2048x2048) keeps that model near
1.3 GB per request. With a budget, two short runs in fresh processes at two sizes give this
model's slope in bytes per pixel (resident memory sampled during the run, above what loading
left); `max_pixels` = (budget - fixed cost) / slope, rounded down to a multiple of 1024. A
separate process per run, so each sees only its own memory.
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
    done = subprocess.run([sys.executable, "-c", _PROBE, str(onnx_path), str(side)], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise GSAMError(f"{onnx_path}: cannot measure the model's memory use ({reason[:200]})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bytes_per_pixel(onnx_path: str | Path, sides: tuple[int, int] = PROBE_SIDES) -> tuple[float, int]:
    """(slope in bytes per pixel, fixed bytes) of a run's peak resident memory against its pixels."""
    small, large = (peak_memory(onnx_path, s) for s in sides)
    growth = [m["peak"] - m["loaded"] for m in (small, large)]
    slope = max(1.0, (growth[1] - growth[0]) / (sides[1] ** 2 - sides[0] ** 2))
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
