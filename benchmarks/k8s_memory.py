"""Measure the resident memory of a Triton server serving gsam_python, to size Kubernetes memory requests.

    python benchmarks/k8s_memory.py --model tiny --sizes 512,1024 [--out benchmarks/results/k8s_memory.json]

Exports the model with random weights (TorchScript exporter, fast), writes a repository, starts the
bundled server on 127.0.0.1, and records the server's RSS (tritonserver + python stub) after loading
and the peak while serving one request at each size. `gsam triton k8s` derives its default memory
request from these figures: a fixed server base plus a multiple of the ONNX file size.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from gsam.export.onnx import export_onnx
from gsam.model import build_gsam
from gsam.runtime.backends import load_backend
from gsam.runtime.bench.process_memory import tree_memory_mib
from gsam.runtime.triton.repository import build_repository
from gsam.runtime.triton.server import TritonServer, free_port


def peak_during(pid: int, work) -> float:
    peak, done = [tree_memory_mib(pid)], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(tree_memory_mib(pid))
            time.sleep(0.05)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        work()
    finally:
        done.set()
        thread.join()
    return max(peak)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--out")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = build_gsam(args.model, num_classes=2).eval()
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(model, onnx_path, exporter="torchscript", log=lambda s: None)
        del model
        onnx_mb = sum(p.stat().st_size for p in Path(tmp).glob("model.onnx*")) / 2**20
        repo = Path(tmp) / "repo"
        build_repository(onnx_path, repo)
        with TritonServer(repo, ["gsam_python"], free_port(), free_port()) as server:
            loaded = tree_memory_mib(server.process.pid)
            client = load_backend("triton-http", server.http_url, model="gsam_python", timeout=900)
            peaks = {}
            for size in sizes:
                image = np.random.default_rng(0).uniform(0, 255, (1, 3, size, size)).astype(np.float32)
                peaks[str(size)] = round(peak_during(server.process.pid, lambda: client(image)), 1)
            client.close()
    result = {"model": args.model, "onnx_mb": round(onnx_mb, 1), "server_rss_loaded_mb": round(loaded, 1),
              "server_rss_peak_mb_by_size": peaks}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
