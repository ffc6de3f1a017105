"""The GPU check's engine sections: TensorRT engines of the tiny model and onnxruntime's CUDA provider, each
compared with the CPU references and timed. Used by benchmarks/gpu_check.py.

TensorRT: an fp32 and an fp16 engine with two profiles that do not overlap, built with gsam's own build
(strongly typed, TF32 off), run at two request shapes inside each profile, compared with onnxruntime (CPU)
and with PyTorch (CPU), both fp32: fp32 within a relative logits error of 1e-3, fp16 on at least 99.5% of mask
pixels. onnxruntime's CUDA provider: the same requests against onnxruntime's CPU provider (relative 1e-3).
Each section says what it lacks instead of running: a CUDA device, TensorRT, onnxruntime(-gpu).
"""

from __future__ import annotations

import importlib
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

PROFILES = ("min=1x3x32x32,opt=1x3x128x128,max=2x3x256x256", "min=1x3x257x32,opt=1x3x512x512,max=1x3x768x768")
REQUESTS = ((2, 3, 97, 130), (1, 3, 32, 255), (1, 3, 300, 500), (1, 3, 768, 257))  # two in each profile
# precision -> (what is compared, bound): fp32 is fp32 (TF32 off), fp16 keeps its fp32 islands.
TOLERANCE = {"fp32": ("max relative logits error", 1e-3), "fp16": ("mask agreement", 0.995)}


def importable(module: str) -> str | None:
    """None when `module` imports, else why not (one line)."""
    try:
        importlib.import_module(module)
    except (ImportError, OSError) as exc:
        return f"{module} does not import ({str(exc).splitlines()[0][:120]})"
    return None


def tensorrt_missing(cuda: bool) -> list[str]:
    """What the TensorRT section lacks here (empty: it can run)."""
    missing = [] if cuda else ["no CUDA device"]
    missing += [why for why in (importable("tensorrt"), importable("onnxruntime")) if why]
    return missing


def provider_missing(cuda: bool) -> list[str]:
    """What the onnxruntime CUDA-provider section lacks here."""
    missing = [] if cuda else ["no CUDA device"]
    why = importable("onnxruntime")
    if why:
        return missing + [why]
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        missing.append("onnxruntime here has no CUDA provider (onnxruntime-gpu not installed)")
    return missing


def agreement(precision: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> tuple[bool, str]:
    """(within the precision's tolerance, the figures) of one output against the fp32 reference."""
    relative = float(np.abs(got["logits"].astype(np.float32) - want["logits"]).max() / np.abs(want["logits"]).max())
    masks = float((got["mask"] == want["mask"]).mean())
    what, bound = TOLERANCE[precision]
    ok = relative <= bound if what.startswith("max relative") else masks >= bound
    return ok, f"rel {relative:.1e}, masks {100 * masks:.2f}%"


def median_ms(call: Callable[[np.ndarray], object], images: np.ndarray, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        call(images)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        call(images)  # every gsam backend returns numpy: the device work is done when it returns
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def compare_rows(label: str, precision: str, run: Callable[[np.ndarray], dict[str, np.ndarray]],
                 references: dict[str, Callable[[np.ndarray], dict[str, np.ndarray]]], profiles: list,
                 iters: int, warmup: int) -> list[str]:
    """One row per request: its profile, agreement with each reference, median latency."""
    from gsam.export.profiles import select_profile

    rng, rows = np.random.default_rng(0), []
    for shape in REQUESTS:
        images = rng.uniform(0, 255, shape).astype(np.float32)
        got = run(images)
        cells = []
        for name, reference in references.items():
            ok, figures = agreement(precision, got, reference(images))
            cells.append(f"{'ok' if ok else 'FAILED'} ({figures})")
        profile = select_profile(profiles, shape) if profiles else "-"
        rows.append(f"| {label} | {'x'.join(map(str, shape))} | {profile} | {' | '.join(cells)} | "
                    f"{median_ms(run, images, iters, warmup):.2f} |")
    return rows


def torch_reference(model) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The model itself on the CPU in fp32, as a segmenter: images -> {logits, mask}."""
    import torch

    from gsam.pixels.masks import logits_to_mask

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            logits = model(torch.from_numpy(images)).float().numpy()
        return {"logits": logits, "mask": logits_to_mask(logits)}

    return run


def tensorrt_section(onnx: Path, model, workdir: Path, *, smoke: bool) -> list[str]:
    """Build fp32 and fp16 engines with both profiles, compare every request with onnxruntime and torch on the
    CPU, time them. Markdown lines (a table)."""
    from gsam.export.profiles import parse_profile
    from gsam.export.tensorrt import BuildSettings, build_engine
    from gsam.runtime.backends import gate_runners, load_backend

    profiles = [parse_profile(p) for p in PROFILES]
    references = {"onnxruntime CPU": load_backend("onnxruntime", onnx), "torch CPU": torch_reference(model)}
    lines = ["| engine | request | profile | vs onnxruntime CPU fp32 | vs torch CPU fp32 | median ms |",
             "|---|---|---|---|---|---|"]
    iters, warmup = (3, 1) if smoke else (20, 5)
    for precision in ("fp32", "fp16"):
        plan = workdir / f"tiny.{precision}.plan"
        sidecar = build_engine(onnx, plan, BuildSettings(profiles, precision), runners=gate_runners(),
                               log=lambda s: None)
        engine = load_backend("tensorrt", plan)
        label = f"TensorRT {sidecar.tensorrt_version} {precision}{' TF32' if sidecar.tf32 else ''}"
        lines += compare_rows(label, precision, engine, references, profiles, iters, warmup)
        engine.close()
    return lines


def provider_section(onnx: Path, *, smoke: bool) -> list[str]:
    """onnxruntime's CUDA provider against its CPU provider (gsam's backend refuses a provider that did not
    start, so a row is never the CPU in disguise)."""
    from gsam.runtime.backends import load_backend

    iters, warmup = (3, 1) if smoke else (20, 5)
    cuda = load_backend("onnxruntime", onnx, providers="cuda")
    lines = ["| provider | request | profile | vs onnxruntime CPU fp32 | median ms |", "|---|---|---|---|---|"]
    lines += compare_rows("onnxruntime CUDA fp32", "fp32", cuda, {"cpu": load_backend("onnxruntime", onnx)}, [],
                          iters, warmup)
    cuda.close()
    return lines
