"""Latency and throughput of every backend across image sizes: the harness behind `gsam bench`.

Each (backend, size, concurrency) case runs a bounded number of requests (and stops at a
time limit), all backends on the same seeded images. Results carry a cost model: FLOPs per
image counted from the architecture, achieved GFLOP/s, and the fraction of the matmul rate
that the row's own engine reaches at the row's precision on this machine (see peaks.py).
"""

from __future__ import annotations

import csv
import json
import platform
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from gsam.io import atomic_path, write_text_atomic
from gsam.model.config import GSAMConfig
from gsam.runtime.backends import Segmenter

from .peaks import peak_key


@dataclass
class CaseResult:
    backend: str
    height: int
    width: int
    batch: int
    concurrency: int
    requests: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    images_per_s: float
    megapixels_per_s: float
    gflops_per_image: float | None = None
    achieved_gflops: float | None = None
    fraction_of_peak: float | None = None
    first_error: str | None = None
    precision: str = "fp32"
    peak: str | None = None  # the "engine/precision" rate fraction_of_peak divides by
    peak_gflops: float | None = None
    server_split_ms: dict[str, float] | None = None  # gsam_image: mean decode / compute / encode in the server


@dataclass
class BenchPlan:
    sizes: list[tuple[int, int]]
    batch: int = 1
    warmup: int = 5
    iters: int = 50
    duration: float | None = None  # seconds per case; with it, iters is only a safety cap
    concurrency: list[int] = field(default_factory=lambda: [1])
    seed: int = 0


@dataclass
class Timing:
    """What one case measured: latencies of the successful requests, failures, wall time."""

    latencies_ms: list[float]
    errors: int
    wall_s: float
    first_error: str | None = None


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_case(open_segmenter: Callable[[], Segmenter], images: np.ndarray, plan: BenchPlan, concurrency: int,
             owned: bool) -> Timing:
    """One case: every thread's requests, timed together.

    Each thread calls open_segmenter() itself: tritonclient's HTTP client is gevent-based and
    must stay in the thread that uses it. `owned` segmenters are closed by their thread; local
    sessions are shared. Every thread warms up, then timing starts for all at once.
    """
    limit = plan.iters if plan.duration is None else max(plan.iters, 1_000_000)
    lock, issued, deadline = threading.Lock(), [0], [float("inf")]
    latencies: list[float] = []
    errors: list[str] = []
    warmed = threading.Barrier(concurrency + 1)

    def record_error(exc: Exception) -> None:
        with lock:
            errors.append(str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)

    def worker() -> None:
        segmenter = None
        try:
            segmenter = open_segmenter()
            for _ in range(plan.warmup):
                segmenter(images)
        except Exception as exc:
            record_error(exc)
        warmed.wait()
        while segmenter is not None:
            with lock:
                if issued[0] >= limit or time.monotonic() >= deadline[0]:
                    break
                issued[0] += 1
            start = time.perf_counter()
            try:
                segmenter(images)
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    latencies.append(elapsed)
            except Exception as exc:  # counted, reported, never fatal to the run
                record_error(exc)
        if owned and segmenter is not None:
            segmenter.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    warmed.wait()
    deadline[0] = time.monotonic() + (plan.duration if plan.duration is not None else 3600.0)
    wall = time.perf_counter()
    for thread in threads:
        thread.join()
    return Timing(latencies, len(errors), time.perf_counter() - wall, errors[0] if errors else None)


def summarize(backend: str, size: tuple[int, int], plan: BenchPlan, concurrency: int, timing: Timing, *,
              gflops: float | None, peaks: dict[str, float], precision: str = "fp32") -> CaseResult:
    """One row; its fraction of peak is against its own engine's rate at its precision (None if unmeasured)."""
    latencies = timing.latencies_ms
    per_s = len(latencies) * plan.batch / timing.wall_s if timing.wall_s > 0 else 0.0
    achieved = gflops * per_s if gflops is not None else None
    key = peak_key(backend, precision)
    peak = peaks.get(key) if key else None
    return CaseResult(
        backend=backend, height=size[0], width=size[1], batch=plan.batch, concurrency=concurrency,
        requests=len(latencies) + timing.errors, errors=timing.errors, p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90), p99_ms=percentile(latencies, 99),
        mean_ms=float(np.mean(latencies)) if latencies else float("nan"), images_per_s=per_s,
        megapixels_per_s=per_s * size[0] * size[1] / 1e6, gflops_per_image=gflops, achieved_gflops=achieved,
        fraction_of_peak=(achieved / peak) if achieved is not None and peak else None,
        first_error=timing.first_error, precision=precision, peak=key if peak else None, peak_gflops=peak)


def gflops_per_image(config: GSAMConfig, size: tuple[int, int]) -> float:
    """Forward GFLOPs of the architecture at `size`, counted on the meta device (no compute)."""
    import torch

    from gsam.model import build_gsam
    from gsam.model.flops import count_flops

    with torch.device("meta"):
        model = build_gsam(config).eval()
    return count_flops(model, size[0], size[1]).total / 1e9


def environment(threads: int | None) -> dict:
    """The machine a bench ran on: its CPU's kind and the flags that decide which kernels are fast."""
    import importlib.metadata as md

    import torch

    from gsam.machine import cpu_facts

    cpu = cpu_facts()
    versions = {}
    for package in ("gsam", "torch", "onnxruntime", "onnx", "numpy", "tritonclient", "nvidia-pytriton"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return {"cpu": cpu.model, "cpu_kind": cpu.kind, "cpu_flags": list(cpu.flags),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "cores": cpu.cores,
            "torch_threads": torch.get_num_threads(), "threads_option": threads,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "platform": platform.platform(), "versions": versions}


def scaling_exponents(results: list[CaseResult]) -> dict[str, float]:
    """Per backend, b in latency ~ pixels^b (least squares on log-log, concurrency 1)."""
    out = {}
    for backend in dict.fromkeys(r.backend for r in results):
        rows = [r for r in results if r.backend == backend and r.concurrency == 1 and np.isfinite(r.p50_ms)]
        if len({r.height * r.width for r in rows}) >= 2:
            slope, _ = np.polyfit(np.log([r.height * r.width for r in rows]), np.log([r.p50_ms for r in rows]), 1)
            out[backend] = float(slope)
    return out


def write_reports(out: Path, results: list[CaseResult], env: dict, extra: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report = {"environment": env, **extra, "scaling_exponent": scaling_exponents(results),
              "results": [asdict(r) for r in results]}
    write_text_atomic(out / "bench.json", json.dumps(report, indent=2))
    with atomic_path(out / "bench.csv") as tmp:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(asdict(results[0])))
            writer.writeheader()
            writer.writerows(asdict(r) for r in results)
    _plots(out, results)


def _plots(out: Path, results: list[CaseResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    xs, ys = [], []
    for backend in dict.fromkeys(r.backend for r in results):
        rows = sorted((r for r in results if r.backend == backend and r.concurrency == min(x.concurrency for x in results)
                       and np.isfinite(r.p50_ms)), key=lambda r: r.height * r.width)
        x, y = [r.height * r.width * r.batch / 1e6 for r in rows], [r.p50_ms for r in rows]
        ax.plot(x, y, marker="o", label=backend)
        xs, ys = xs + x, ys + y
    ax.set(xscale="log", yscale="log", xlabel="megapixels per request", ylabel="p50 latency (ms)",
           title="Latency against image size")
    if xs:  # explicit limits: a single size would leave log axes without a range
        ax.set(xlim=(min(xs) / 1.5, max(xs) * 1.5), ylim=(min(ys) / 1.5, max(ys) * 1.5))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out / "latency_vs_megapixels.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    for key in dict.fromkeys((r.backend, r.height, r.width) for r in results):
        rows = sorted((r for r in results if (r.backend, r.height, r.width) == key), key=lambda r: r.concurrency)
        ax.plot([r.concurrency for r in rows], [r.images_per_s for r in rows], marker="o", label=f"{key[0]} {key[1]}x{key[2]}")
    ax.set(xlabel="concurrent requests", ylabel="images / s", title="Throughput against concurrency")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out / "throughput_vs_concurrency.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _percent_of_peak(fraction: float | None) -> str:
    if fraction is None:
        return f"{'-':>7}"
    return f"{100 * fraction:6.1f}%" if fraction <= 1 else f"{'>100%':>7}"


def format_table(results: list[CaseResult]) -> str:
    """Rows with each backend's p50 as a ratio to the first backend's at the same size and concurrency."""
    first = results[0].backend if results else ""
    base = {(r.height, r.width, r.concurrency): r.p50_ms for r in results if r.backend == first}
    head = (f"{'backend':<18}{'prec':>5}{'size':>10}{'conc':>5}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'img/s':>8}"
            f"{'MP/s':>7}{'GFLOP/s':>9}{'%peak':>7}{'err':>5}{'ratio':>7}")
    lines = [f"(ratio: p50 latency relative to {first} at the same size and concurrency; %peak: of the faster of a "
             f"matmul and a 3x3 conv in the row's own engine and precision, measured in this run)", head]
    for r in results:
        ratio = r.p50_ms / base[(r.height, r.width, r.concurrency)] if (r.height, r.width, r.concurrency) in base else float("nan")
        gf = f"{r.achieved_gflops:9.1f}" if r.achieved_gflops is not None else f"{'-':>9}"
        pk = _percent_of_peak(r.fraction_of_peak)
        lines.append(f"{r.backend:<18}{r.precision:>5}{f'{r.height}x{r.width}':>10}{r.concurrency:>5}{r.p50_ms:9.1f}{r.p90_ms:9.1f}"
                     f"{r.p99_ms:9.1f}{r.images_per_s:8.2f}{r.megapixels_per_s:7.2f}{gf}{pk}{r.errors:>5}{ratio:7.2f}")
    if any(r.fraction_of_peak is not None and r.fraction_of_peak > 1 for r in results):
        lines.append("(>100%: the model's kernels beat this run's probes, e.g. Winograd convolutions or fused "
                     "attention doing fewer operations than the FLOPs counted; read it as 'at the peak')")
    split = [r for r in results if r.server_split_ms]
    if split:
        lines.append("gsam_image in the server, mean ms per request: "
                     + "; ".join(f"{r.height}x{r.width} c{r.concurrency}: "
                                 + ", ".join(f"{k} {v:.1f}" for k, v in r.server_split_ms.items()) for r in split))
    return "\n".join(lines)
