"""Forward multiply-adds per training crop: GSAM vit_b at small crops against SAM vit_b at 1024x1024.

Counted two ways: every operation (torch.utils.flop_counter, FLOPs / 2) and convolutions and linear
projections only (the thop convention of the paper's table, where SAM = 371.98 G), including those called
through torch.nn.functional (GSAM's qkv projection), which thop's module hooks miss. Runs on the meta
device: no compute.

    python benchmarks/macs.py
"""

from __future__ import annotations

import torch

from gsam.bench.sam_baseline import build_sam_baseline
from gsam.model import build_gsam
from gsam.model.flops import count_layer_macs, counted_flops


def macs(model, size: int) -> tuple[float, float]:
    images = torch.zeros(1, 3, size, size, device="meta")
    return counted_flops(model, images).get_total_flops() / 2e9, count_layer_macs(model, images) / 1e9


def main() -> None:
    with torch.device("meta"):
        sam = build_sam_baseline()
        gsam_models = {s: build_gsam("vit_b", num_classes=2, train_size=(max(s, 32), max(s, 32))).eval()
                       for s in (32, 64, 128, 256)}
    sam_all, sam_layers = macs(sam, 1024)
    print("| model | input | all ops (G MACs) | conv + linear (G MACs) | conv + linear vs SAM | paper (thop) |")
    print("|---|---|---|---|---|---|")
    print(f"| SAM vit_b | 1024x1024 | {sam_all:.2f} | {sam_layers:.2f} | 1.00 | 371.98 |")
    paper = {256: 270.33, 128: 74.07, 64: 18.53, 32: 7.42}
    for size, model in sorted(gsam_models.items(), reverse=True):
        all_ops, layers = macs(model, size)
        print(f"| GSAM vit_b | {size}x{size} | {all_ops:.2f} | {layers:.2f} | {layers / sam_layers:.3f} | {paper[size]} |")


if __name__ == "__main__":
    main()
