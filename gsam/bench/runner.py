"""Orchestrates `gsam bench`: resolves the model for each backend, starts Triton if asked, runs every case."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from gsam.errors import GSAMError
from gsam.model.config import GSAMConfig
from gsam.runtime.backends import load_backend
from gsam.runtime.triton_names import IMAGE_MODEL, TENSOR_MODEL

from .harness import (
    BenchPlan,
    CaseResult,
    environment,
    format_table,
    gflops_per_image,
    run_case,
    summarize,
    write_reports,
)
from .peaks import Peaks

LOCAL_BACKENDS = ("torch", "onnxruntime", "tensorrt")


@dataclass
class BenchRequest:
    """What `gsam bench` was asked for: the backends, the model and the cases."""

    backends: list[str]
    model_path: Path  # run directory or .pt (torch; exported for the others), or a gsam .onnx file
    out: Path
    plan: BenchPlan = field(default_factory=lambda: BenchPlan([(256, 256)]))
    onnx_path: str | None = None  # use this ONNX file instead of exporting
    engine: str | None = None  # TensorRT engine for the tensorrt backend
    url: str | None = None  # a running Triton server; without it one is started from the ONNX file
    triton_model: str = TENSOR_MODEL
    threads: int | None = None
    baseline: str | None = None  # "sam-vit-b": SAM ViT-B at a fixed 1024x1024
    amp: str = "auto"

    @property
    def needs_local_triton(self) -> bool:
        return any(b.startswith("triton") for b in self.backends) and not self.url


def _check(request: BenchRequest) -> None:
    model_path, backends = request.model_path, request.backends
    if not model_path.exists():
        raise GSAMError(f"{model_path}: no such run directory, checkpoint or ONNX file")
    if "torch" in backends and model_path.suffix == ".onnx":
        raise GSAMError("the torch backend needs a run directory or .pt as --model, not an ONNX file")
    if "tensorrt" in backends and not request.engine:
        raise GSAMError("the tensorrt backend needs --engine model.plan")
    if request.amp not in ("off", "auto") and "torch" not in backends:
        raise GSAMError(f"--amp {request.amp} applies to the torch backend only; add torch to --backend")


def _resolve_onnx(request: BenchRequest, log: Callable[[str], None]) -> Path | None:
    """The ONNX file the onnxruntime and Triton backends run: given, the model itself, or exported once."""
    model_path = request.model_path
    if request.onnx_path:
        return Path(request.onnx_path)
    if model_path.suffix == ".onnx":
        return model_path
    if "onnxruntime" not in request.backends and not request.needs_local_triton:
        return None
    target = request.out / "model.onnx"
    if not target.is_file():
        from gsam.export.onnx import export_checkpoint

        log(f"exporting {model_path} to {target} for the ONNX-based backends")
        export_checkpoint(model_path, target, log=log)
    return target


def _model_config(model_path: Path, onnx: Path | None) -> GSAMConfig:
    """The architecture, for FLOP counting and the minimum size: from the checkpoint, else the ONNX metadata."""
    if model_path.suffix == ".onnx" and onnx is not None:
        from gsam.export.metadata import read_onnx_facts

        return read_onnx_facts(onnx).config
    from gsam.model.run import trained_facts

    return trained_facts(model_path)[2].config


def run_bench(request: BenchRequest, log: Callable[[str], None] = print) -> str:
    """Time every backend at every size and concurrency; write bench.json, bench.csv and plots; return the table."""
    _check(request)
    if request.threads:
        import torch

        torch.set_num_threads(request.threads)
    request.out.mkdir(parents=True, exist_ok=True)
    onnx = _resolve_onnx(request, log)
    config = _model_config(request.model_path, onnx)
    small = [s for s in request.plan.sizes if min(s) < config.min_size]
    if small:
        raise GSAMError(f"--sizes {small[0][0]}x{small[0][1]} is below the model's minimum side of {config.min_size}")
    peaks = Peaks(request.threads, log)
    amp = _torch_amp(request, log)
    flops = {s: gflops_per_image(config, s) for s in request.plan.sizes}
    rng = np.random.default_rng(request.plan.seed)
    inputs = {s: rng.uniform(0, 255, (request.plan.batch, 3, *s)).astype(np.float32) for s in request.plan.sizes}
    extra = {"plan": {"sizes": [list(s) for s in request.plan.sizes], "batch": request.plan.batch,
                      "warmup": request.plan.warmup, "iters": request.plan.iters, "duration": request.plan.duration,
                      "concurrency": request.plan.concurrency},
             "amp": amp.mode if amp else None, "amp_reason": amp.reason if amp else None,
             "model": str(request.model_path),
             "onnx": str(onnx) if onnx else None}
    total = len(request.backends) * len(request.plan.sizes) * len(request.plan.concurrency)
    total += len(request.plan.sizes) if request.baseline else 0
    with contextlib.ExitStack() as stack:
        server_url = _triton_url(request, onnx, stack, log)
        bar = stack.enter_context(tqdm(total=total, desc="bench", unit="case"))
        results = _run_backends(request, onnx, server_url, cases=(inputs, flops, peaks), bar=bar)
        if request.baseline:
            results += _run_baseline(request, inputs, peaks, bar, extra)
    extra.update(peak_gflops=peaks.as_dict(), peak_kernels=peaks.kernels())
    write_reports(request.out, results, environment(request.threads), extra)
    return format_table(results) + (f"\nwrote {request.out}/bench.json, bench.csv, latency_vs_megapixels.png, "
                                    "throughput_vs_concurrency.png")


def _torch_amp(request: BenchRequest, log: Callable[[str], None]):
    """--amp resolved once for the torch backend (auto measures), said once; None without torch."""
    if "torch" not in request.backends:
        return None
    import torch

    from gsam.amp import choose_amp

    choice = choose_amp(request.amp, torch.device("cpu"))
    log(f"torch backend: {choice.line()}")
    if choice.warning:
        log(choice.warning)
    request.amp = choice.mode
    return choice


def _triton_url(request: BenchRequest, onnx: Path | None, stack: contextlib.ExitStack,
                log: Callable[[str], None]) -> str | dict[str, str] | None:
    """The given --url, or the HTTP and gRPC addresses of a server started here on the ONNX file."""
    if not request.needs_local_triton:
        return request.url
    from gsam.deploy.triton.repository import build_repository
    from gsam.runtime.serving.server import TritonServer, free_port

    assert onnx is not None
    build_repository(onnx, request.out / "triton_models")
    models = list(dict.fromkeys([request.triton_model, *([IMAGE_MODEL, TENSOR_MODEL] if "triton-image" in
                                                          request.backends else [])]))
    server = stack.enter_context(TritonServer(request.out / "triton_models", models, free_port(), free_port(),
                                              log_path=request.out / "triton.log"))
    log(f"started Triton: HTTP {server.http_url}, gRPC {server.grpc_url}")
    return {"http": server.http_url, "grpc": server.grpc_url}


def _run_backends(request: BenchRequest, onnx: Path | None, server_url, *, cases: tuple[dict, dict, dict],
                  bar: tqdm) -> list[CaseResult]:
    """Every backend at every size and concurrency; `cases` = (input per size, GFLOPs per size, peak rates)."""
    inputs, flops, peaks = cases
    results = []
    for backend in request.backends:
        opener, shared, precision = _opener(request, backend, onnx, server_url)
        try:
            for size in request.plan.sizes:
                for concurrency in request.plan.concurrency:
                    bar.set_postfix_str(f"{backend} {size[0]}x{size[1]} c{concurrency}")
                    opened: list = []
                    timing = run_case(_recording(opener, opened), inputs[size], request.plan, concurrency,
                                      owned=shared is None)
                    row = summarize(backend, size, request.plan, concurrency, timing, gflops=flops[size], peaks=peaks,
                                    precision=precision)
                    row.server_split_ms = _server_split(opened, request.plan.warmup * request.plan.batch)
                    results.append(row)
                    bar.update(1)
        finally:
            if shared is not None:
                shared.close()
    return results


def _run_baseline(request: BenchRequest, inputs: dict, peaks: dict, bar: tqdm, extra: dict) -> list[CaseResult]:
    """SAM ViT-B at a fixed 1024x1024, each size resized to it: what SAM deployments do today."""
    from .sam_baseline import SamBaselineSegmenter, export_sam_baseline, sam_gflops

    sam = SamBaselineSegmenter(export_sam_baseline(request.out / "sam_vit_b_1024.onnx"), request.threads)
    sam_flops = sam_gflops()
    extra["baseline"] = {"name": "sam-vit-b@1024", "gflops_per_image": sam_flops}
    results = []
    for size in request.plan.sizes:
        bar.set_postfix_str(f"sam-vit-b@1024 from {size[0]}x{size[1]}")
        timing = run_case(lambda: sam, inputs[size], request.plan, 1, owned=False)
        results.append(summarize(sam.name, size, request.plan, 1, timing, gflops=sam_flops, peaks=peaks))
        bar.update(1)
    return results


def _opener(request: BenchRequest, backend: str, onnx: Path | None, server_url):
    """(open_segmenter, shared, precision): local backends load once and are shared by the threads;
    Triton clients are opened by each thread (shared is None). Torch runs at `amp`, the others
    at the precision their model file records."""
    if backend in LOCAL_BACKENDS:
        target = {"torch": request.model_path, "onnxruntime": onnx, "tensorrt": request.engine}[backend]
        options = {"onnxruntime": {"threads": request.threads}, "torch": {"amp": request.amp}}.get(backend, {})
        shared = load_backend(backend, target, **options)
        precision = (shared.amp if shared.amp != "off" else "fp32") if backend == "torch" else shared.facts.precision
        return (lambda: shared), shared, precision
    protocol = "http" if backend == "triton-image" else backend.split("-")[1]
    target = server_url[protocol] if isinstance(server_url, dict) else server_url
    if backend == "triton-image":
        model = IMAGE_MODEL if request.triton_model == TENSOR_MODEL else request.triton_model
        options = {"model": model, "record_split": True}
    else:
        options = {"model": request.triton_model}
    probe = load_backend(backend, target, **options)  # fail early, in one line, if unreachable
    precision = probe.facts.precision
    probe.close()
    if backend == "triton-image":
        return (lambda: EncodedRequests(load_backend(backend, target, **options))), None, precision
    return (lambda: load_backend(backend, target, **options)), None, precision


class EncodedRequests:
    """gsam_image in the bench: each case's images are encoded (PNG, lossless) once, and the timed calls send
    those bytes, so the client's encoding is not timed; the server's decode/compute/encode split is kept."""

    def __init__(self, segmenter) -> None:
        self.segmenter, self.encoded = segmenter, {}

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        from gsam.pixels.codec import encode_png

        key = (images.ctypes.data, images.shape)
        if key not in self.encoded:
            self.encoded[key] = [encode_png(np.clip(i.transpose(1, 2, 0), 0, 255).round().astype(np.uint8))
                                 for i in images]
        return [self.segmenter.segment_encoded(data) for data in self.encoded[key]]

    @property
    def split_ms(self) -> list[np.ndarray]:
        return self.segmenter.split_ms

    def close(self) -> None:
        self.segmenter.close()


def _recording(opener, opened: list):
    """The opener, keeping what it opens (to read the server's timings afterwards)."""
    def open_and_record():
        segmenter = opener()
        opened.append(segmenter)
        return segmenter

    return open_and_record


def _server_split(opened: list, warmup: int) -> dict[str, float] | None:
    """Mean decode/compute/encode ms of gsam_image over the case's timed images (each thread's warm-up images left out)."""
    from gsam.runtime.backends.triton_client import TritonImageSegmenter

    rows = [s for o in opened for s in getattr(o, "split_ms", [])[warmup:]]
    if not rows:
        return None
    return dict(zip(TritonImageSegmenter.SPLIT, (float(v) for v in np.mean(rows, axis=0))))
