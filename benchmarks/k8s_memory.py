"""The server's peak memory for the largest legal request, against the pod limit `gsam triton k8s` writes.

    python benchmarks/k8s_memory.py --model tiny --sides 512,1024,2048 [--out benchmarks/results/k8s_memory_tiny.json]

Exports the model with random weights (TorchScript exporter, fast) and, for each side S, writes a
repository with --max-pixels S x S and --max-batch 1, lets `gsam triton k8s`'s planner compute the
limit, starts the bundled server on 127.0.0.1 and sends the largest legal request: a 1x3xSxS FP32
tensor to gsam_python over gRPC (the protocol that peaked highest) and an SxS PNG to gsam_image.
The server's peak is tritonserver's plus each stub's VmHWM (shared memory counted in both, so it
over-states what the pod's cgroup sees). The limit also holds gsam serve's own process, which is
not started here.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gsam.bench.process_memory import tree_memory_mib
from gsam.deploy.k8s import K8sOptions, write_manifests
from gsam.deploy.triton.repository import Batching, build_repository
from gsam.export.onnx import export_onnx
from gsam.model import build_gsam
from gsam.runtime.backends import load_backend
from gsam.runtime.serving.server import TritonServer, free_port
from gsam.runtime.triton_names import IMAGE_MODEL, TENSOR_MODEL


def largest_request(model: str, side: int):
    """A callable sending the largest legal request of `model` to a server."""
    if model == TENSOR_MODEL:
        image = np.random.default_rng(0).uniform(0, 255, (1, 3, side, side)).astype(np.float32)
        return lambda server: load_backend("triton-grpc", server.grpc_url, model=model, timeout=900)(image)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
        buffer, format="PNG", compress_level=1)
    return lambda server: load_backend("triton-image", server.http_url, model=model,
                                       timeout=900).segment_encoded(buffer.getvalue())


def measure(onnx_path: Path, root: Path, side: int, model: str) -> dict:
    repo = root / f"repo-{side}"
    if not repo.exists():
        build_repository(onnx_path, repo, max_pixels=side * side, batching=Batching(max_batch_size=1),
                         log=lambda s: None)
    plan = write_manifests(repo, root / f"deploy-{side}-{model}", K8sOptions(models=[model])).plan
    send = largest_request(model, side)
    with TritonServer(repo, [model], free_port(), free_port()) as server:
        loaded = tree_memory_mib(server.process.pid, "VmHWM")
        send(server)
        peak = tree_memory_mib(server.process.pid, "VmHWM")
    load = plan.loads[0]
    return {"model": model, "max_pixels": side * side, "onnxruntime_bytes_per_pixel": round(load.cost.per_pixel, 1),
            "server_loaded_mib": round(loaded, 1), "server_peak_mib": round(peak, 1),
            "limit_mib": int(plan.memory[:-2]), "shm_mib": int(plan.shm_size[:-2]),
            "limit_over_peak": round(int(plan.memory[:-2]) / peak, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--sides", default="512,1024,2048")
    parser.add_argument("--out")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = build_gsam(args.model, num_classes=3).eval()
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(model, onnx_path, exporter="torchscript", log=lambda s: None)
        del model
        onnx_mb = sum(p.stat().st_size for p in Path(tmp).glob("model.onnx*")) / 2**20
        for side in (int(s) for s in args.sides.split(",")):
            for served in (TENSOR_MODEL, IMAGE_MODEL):
                rows.append(measure(onnx_path, Path(tmp), side, served))
                print(json.dumps(rows[-1]), flush=True)
    result = {"model": args.model, "onnx_mb": round(onnx_mb, 1), "largest_legal_requests": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
