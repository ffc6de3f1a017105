"""onnxruntime (CPU) latency of fp32, fp16 and int8 variants side by side, and each variant's gate figures.

    python benchmarks/precision.py --run benchmarks/work/demo/run --sizes 256,512,1024 --repeats 3

int8 comes in both of `gsam export onnx --int8-scheme`'s forms: `int8` (tensorrt: signed, symmetric
activations) and `int8-cpu` (cpu: unsigned activations with a zero point).

The trained run (tiny) gives both the gate figures (its val images, PyTorch as reference) and
latency rows; vit_b is built with random weights, which is enough for latency (the compute
does not depend on the values), so its variants are converted without a gate.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from gsam.export.gate_data import load_gate_images, run_data_folder
from gsam.export.metadata import read_onnx_facts, rewrite_onnx_facts
from gsam.export.onnx import export_checkpoint, export_onnx
from gsam.export.fp16 import convert_fp16
from gsam.export.gate import GateThresholds
from gsam.export.int8 import quantize_int8
from gsam.export.variants import make_variant
from gsam.model import build_gsam
from gsam.runtime.backends import load_backend

PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu")
INT8_SCHEME = {"int8": "tensorrt", "int8-cpu": "cpu"}


def side_by_side(sessions: dict, images: np.ndarray, repeats: int) -> dict[str, float]:
    """Median seconds per precision; the precisions take turns so load changes hit them alike."""
    for session in sessions.values():
        session(images)
    times = {name: [] for name in sessions}
    for _ in range(repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            session(images)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def ungated_variants(fp32: Path, calib: list[np.ndarray]) -> dict[str, Path]:
    """fp16 and both int8 files of a random-weight model (latency only: no gate)."""
    import dataclasses

    import onnx

    facts = read_onnx_facts(fp32)
    files = {p: fp32.with_name(f"{p}.onnx") for p in PRECISIONS}
    onnx.save(convert_fp16(onnx.load(str(fp32))), str(files["fp16"]))
    for name, scheme in INT8_SCHEME.items():
        quantize_int8(fp32, files[name], calib, scheme)
    for name in PRECISIONS[1:]:
        rewrite_onnx_facts(files[name], dataclasses.replace(facts, precision=name.split("-")[0]))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="A trained run directory (e.g. the demo's).")
    parser.add_argument("--data", help="Its dataset folder [default: the run's training data].")
    parser.add_argument("--models", default="run,vit_b", help="run (the trained tiny model) and/or vit_b.")
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--vit-b-sizes", help="Sizes for vit_b [default: --sizes].")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--exporter", default="dynamo")
    parser.add_argument("--vit-b-onnx", help="An fp32 vit_b export to reuse instead of exporting one.")
    args = parser.parse_args()
    data = Path(args.data) if args.data else run_data_folder(args.run)
    gate_data = load_gate_images(data, calib_count=32)
    gate_rows, latency_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            folder = Path(tmp) / name
            folder.mkdir()
            fp32 = folder / "fp32.onnx"
            quiet = dict(exporter=args.exporter, verify_sizes=[(200, 296)], log=lambda s: None)
            if name == "run":
                export_checkpoint(args.run, fp32, **quiet)
                reference = load_backend("torch", args.run)
                files = {"fp32": fp32}
                for precision in PRECISIONS[1:]:
                    files[precision] = folder / f"{precision}.onnx"
                    started = time.perf_counter()
                    report = make_variant(fp32, files[precision], precision.split("-")[0], reference=reference,
                                          candidate=lambda path: load_backend("onnxruntime", path), data=gate_data,
                                          thresholds=GateThresholds(), log=lambda s: None,
                                          int8_scheme=INT8_SCHEME.get(precision, "tensorrt"))
                    gate_rows.append(f"| tiny (trained run) | {precision} | {len(gate_data.images)} + {len(report.rows) - len(gate_data.images)} "
                                     f"| {report.mask_agreement:.4%} | {100 * report.reference_miou:.2f} | "
                                     f"{100 * report.variant_miou:.2f} | {report.miou_drop:+.2f} | "
                                     f"{report.max_logit_error:.3f} | {report.size_bytes / 1e6:.1f} | "
                                     f"{time.perf_counter() - started:.0f} |")
                    print(gate_rows[-1], file=sys.stderr, flush=True)
                label, sizes = "tiny (trained run)", args.sizes
            else:
                if name == "vit_b" and args.vit_b_onnx:
                    shutil.copyfile(args.vit_b_onnx, fp32)
                else:
                    torch.manual_seed(0)
                    export_onnx(build_gsam(name, num_classes=3).eval(), fp32, **quiet)
                files = ungated_variants(fp32, gate_data.calib_images[:8])
                label, sizes = f"{name} (random weights)", args.vit_b_sizes or args.sizes
            sessions = {p: load_backend("onnxruntime", files[p]) for p in PRECISIONS}
            sizes_mb = {p: sum(f.stat().st_size for f in folder.glob(f"{p}.onnx*")) / 1e6 for p in PRECISIONS}
            for size in (int(s) for s in sizes.split(",")):
                images = np.random.default_rng(0).uniform(0, 255, (1, 3, size, size)).astype(np.float32)
                t = side_by_side(sessions, images, args.repeats)
                latency_rows.append(f"| {label} | {size}x{size} | "
                                    + " | ".join(f"{t[p] * 1000:.0f}" for p in PRECISIONS) + " | "
                                    + " | ".join(f"{t[p] / t['fp32']:.2f}" for p in PRECISIONS[1:]) + " |")
                print(latency_rows[-1], file=sys.stderr, flush=True)
            latency_rows.append(f"| {label} | file MB | " + " | ".join(f"{sizes_mb[p]:.1f}" for p in PRECISIONS)
                                + " |" * len(PRECISIONS))
    print(f"\nonnxruntime {onnxruntime.__version__} CPU, {torch.get_num_threads()} threads, batch 1, median of "
          f"{args.repeats} (precisions interleaved), exporter {args.exporter}\n")
    print("| model | size | " + " | ".join(f"{p} ms" for p in PRECISIONS) + " | "
          + " | ".join(f"{p} / fp32" for p in PRECISIONS[1:]) + " |\n" + "|---" * (2 * len(PRECISIONS) + 1) + "|")
    print("\n".join(latency_rows))
    print(f"\nGate on {data} (val images at native size + the same images resized to unseen sizes; reference = PyTorch fp32)\n")
    print("| model | variant | images (val + unseen) | mask agreement | mIoU fp32 | mIoU variant | drop (points) "
          "| max logit err | file MB | convert + gate s |\n|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(gate_rows))


if __name__ == "__main__":
    main()
