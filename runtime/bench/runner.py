"""Orchestrates `gsam bench`: resolves the model for each backend, starts Triton if asked, runs every case."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ...errors import GSAMError
from ..backends import load_backend
from .harness import BenchPlan, environment, format_table, gflops_per_image, run_case, summarize, write_reports
from .peaks import measure_peaks


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _resolve_onnx(model_path: Path, onnx_path: str | None, out: Path, log) -> Path:
    if onnx_path:
        return Path(onnx_path)
    if model_path.suffix == ".onnx":
        return model_path
    target = out / "model.onnx"
    if not target.is_file():
        from ...export.onnx import export_checkpoint

        log(f"exporting {model_path} to {target} for the ONNX-based backends")
        export_checkpoint(model_path, target, log=log)
    return target


def _model_config(model_path: Path, onnx: Path | None) -> dict | None:
    """The architecture, for FLOP counting: from the checkpoint, else the ONNX metadata."""
    if model_path.suffix == ".onnx":
        from ...export.metadata import read_onnx_facts

        return read_onnx_facts(onnx).config or None
    from ...model.checkpoint import read_gsam_checkpoint
    from ...train.run_dir import resolve_checkpoint

    return read_gsam_checkpoint(resolve_checkpoint(model_path))["config"]


def run_bench(backends: list[str], model_path: Path, onnx_path: str | None, engine: str | None, url: str | None,
              triton_model: str, sizes: list[tuple[int, int]], batch: int, warmup: int, iters: int,
              duration: float | None, concurrency: list[int], threads: int | None, baseline: str | None, out: Path,
              amp: str = "off", log=print) -> str:
    if not model_path.exists():
        raise GSAMError(f"{model_path}: no such run directory, checkpoint or ONNX file")
    if "torch" in backends and model_path.suffix == ".onnx":
        raise GSAMError("the torch backend needs a run directory or .pt as --model, not an ONNX file")
    if "tensorrt" in backends and not engine:
        raise GSAMError("the tensorrt backend needs --engine model.plan")
    if amp != "off" and "torch" not in backends:
        raise GSAMError(f"--amp {amp} applies to the torch backend only; add torch to --backend")
    _set_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    local_triton = any(b.startswith("triton") for b in backends) and not url
    if model_path.suffix == ".onnx" or onnx_path or "onnxruntime" in backends or local_triton:
        onnx = _resolve_onnx(model_path, onnx_path, out, log)
    else:
        onnx = None
    config = _model_config(model_path, onnx)
    from ...model import GSAMConfig

    min_size = GSAMConfig.from_dict(config).min_size if config else None
    small = [s for s in sizes if min_size and min(s) < min_size]
    if small:
        raise GSAMError(f"--sizes {small[0][0]}x{small[0][1]} is below the model's minimum side of {min_size}")
    plan = BenchPlan(sizes, batch, warmup, iters, duration, concurrency)
    peaks = measure_peaks(threads)
    log("matmul rate of each engine on this machine (GFLOP/s): "
        + ", ".join(f"{key} {rate:.0f}" for key, rate in peaks.items()))
    flops = {s: gflops_per_image(config, s) for s in sizes} if config else {}
    results = []
    with contextlib.ExitStack() as stack:
        server_url = url
        if any(b.startswith("triton") for b in backends) and not url:
            from ..triton.repository import build_repository
            from ..triton.server import TritonServer, free_port

            build_repository(onnx, out / "triton_models")
            server = stack.enter_context(TritonServer(out / "triton_models", [triton_model], free_port(), free_port(),
                                                      log_path=out / "triton.log"))
            server_url = {"http": server.http_url, "grpc": server.grpc_url}
            log(f"started Triton: HTTP {server.http_url}, gRPC {server.grpc_url}")
        rng = np.random.default_rng(plan.seed)
        inputs = {s: rng.uniform(0, 255, (batch, 3, *s)).astype(np.float32) for s in sizes}
        total = len(backends) * len(sizes) * len(concurrency) + (len(sizes) if baseline else 0)
        bar = stack.enter_context(tqdm(total=total, desc="bench", unit="case"))
        for backend in backends:
            opener, shared, precision = _opener(backend, model_path, onnx, engine, server_url, triton_model,
                                                threads, amp)
            try:
                for size in sizes:
                    for conc in concurrency:
                        bar.set_postfix_str(f"{backend} {size[0]}x{size[1]} c{conc}")
                        result = run_case(opener, inputs[size], plan, conc, owned=shared is None)
                        results.append(summarize(backend, size, plan, conc, *result, flops.get(size), peaks, precision))
                        bar.update(1)
            finally:
                if shared is not None:
                    shared.close()
        extra = {"plan": {"sizes": [list(s) for s in sizes], "batch": batch, "warmup": warmup, "iters": iters,
                          "duration": duration, "concurrency": concurrency},
                 "peak_gflops": peaks, "amp": amp, "model": str(model_path), "onnx": str(onnx) if onnx else None}
        if baseline:
            from .sam_baseline import SamBaselineSegmenter, export_sam_baseline, sam_gflops

            path = export_sam_baseline(out / "sam_vit_b_1024.onnx")
            sam = SamBaselineSegmenter(path, threads)
            sam_flops = sam_gflops()
            extra["baseline"] = {"name": "sam-vit-b@1024", "gflops_per_image": sam_flops}
            for size in sizes:
                bar.set_postfix_str(f"sam-vit-b@1024 from {size[0]}x{size[1]}")
                result = run_case(lambda: sam, inputs[size], plan, 1, owned=False)
                results.append(summarize(sam.name, size, plan, 1, *result, sam_flops, peaks))
                bar.update(1)
    write_reports(out, results, environment(threads), extra)
    return format_table(results) + f"\nwrote {out}/bench.json, bench.csv, latency_vs_megapixels.png, throughput_vs_concurrency.png"


def _opener(backend, model_path, onnx, engine, server_url, triton_model, threads, amp):
    """(open_segmenter, shared, precision): local backends load once and are shared by the threads;
    Triton clients are opened by each thread (shared is None). Torch runs at `amp`, the others
    at the precision their model file records."""
    if backend in ("torch", "onnxruntime", "tensorrt"):
        target = {"torch": model_path, "onnxruntime": onnx, "tensorrt": engine}[backend]
        options = {"threads": threads} if backend == "onnxruntime" else {"amp": amp} if backend == "torch" else {}
        shared = load_backend(backend, target, **options)
        precision = (amp if amp != "off" else "fp32") if backend == "torch" else shared.facts.precision
        return (lambda: shared), shared, precision
    protocol = backend.split("-")[1]
    target = server_url[protocol] if isinstance(server_url, dict) else server_url
    probe = load_backend(backend, target, model=triton_model)  # fail early, in one line, if unreachable
    precision = probe.facts.precision
    probe.close()
    return (lambda: load_backend(backend, target, model=triton_model)), None, precision
