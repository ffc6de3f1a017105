"""Export time and size, then onnxruntime (CPU) against PyTorch eager at several sizes.

    python benchmarks/export_latency.py --models tiny,vit_b --sizes 256,512,1024 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gsam.export.onnx import export_onnx
from gsam.model import build_gsam
from gsam.runtime.backends import load_backend


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,vit_b")
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--exporter", default="dynamo")
    args = parser.parse_args()
    export_rows, latency_rows = [], []
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = build_gsam(name, num_classes=3).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.onnx"
            report = export_onnx(model, path, exporter=args.exporter, verify_sizes=[(200, 296)], log=lambda s: None)
            worst = max(r.max_rel for r in report.rows)
            export_rows.append(f"| {name} | {args.exporter} | {report.seconds:.1f} | {report.size_bytes / 1e6:.1f} | "
                               f"{report.nodes} | {worst:.1e} |")
            session = load_backend("onnxruntime", path)
            for size in (int(s) for s in args.sizes.split(",")):
                images = np.random.default_rng(0).uniform(0, 255, (1, 3, size, size)).astype(np.float32)
                tensor = torch.from_numpy(images)
                with torch.inference_mode():
                    eager = median_seconds(lambda: model(tensor), args.repeats)
                ort = median_seconds(lambda: session(images), args.repeats)
                latency_rows.append(f"| {name} | {size}x{size} | {eager * 1000:.0f} | {ort * 1000:.0f} | {eager / ort:.2f} |")
                print(latency_rows[-1], flush=True)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}\n")
    print("| model | exporter | export s | file MB | nodes | max rel err (200x296, batch 1 and 2) |\n|---|---|---|---|---|---|")
    print("\n".join(export_rows))
    print("\n| model | size | PyTorch eager ms | onnxruntime ms | eager / onnxruntime |\n|---|---|---|---|---|")
    print("\n".join(latency_rows))


if __name__ == "__main__":
    main()
