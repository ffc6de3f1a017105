"""Does bf16 autocast training reach fp32's accuracy? Validation mIoU of the same runs in fp32 and bf16.

Trains the tiny model on a generated 3-class dataset once per (seed, precision), on the CPU
(bf16 through CPU autocast, validation under the same autocast), and prints a markdown table:
final and best validation mIoU per run and the bf16 - fp32 difference per seed.

    python benchmarks/amp_miou.py --seeds 0,1 --epochs 8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from gsam.data.synth import write_synthetic_dataset
from gsam.train.config import TrainConfig
from gsam.train.trainer import train


def run(data: Path, out: Path, seed: int, amp: str, args) -> dict:
    cfg = TrainConfig(data=str(data), out=str(out), model="tiny", epochs=args.epochs, batch_size=4, lr=2e-3,
                      workers=0, crop=(96, 96), seed=seed, device="cpu", amp=amp, val_every=args.val_every)
    start = time.perf_counter()
    train(cfg, progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    mious = [r["val_miou"] for r in rows if r.get("val_miou") is not None]
    return {"final": mious[-1], "best": max(mious), "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--val-every", type=int, default=2, help="Validate every N epochs (the last one always).")
    parser.add_argument("--train-images", type=int, default=24)
    parser.add_argument("--val-images", type=int, default=8)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; tiny model, {args.epochs} epochs "
          f"(validated every {args.val_every}), batch 4, "
          f"crop 96, Adam 2e-3; synthetic 3-class data ({args.train_images} train / {args.val_images} val images, "
          f"48-112 px, data seed 1)\n")
    print("| seed | fp32 final mIoU | bf16 final mIoU | bf16 - fp32 (points) | fp32 best | bf16 best "
          "| fp32 s | bf16 s |\n|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_synthetic_dataset(data, num_classes=3, train=args.train_images, val=args.val_images, min_size=48,
                                max_size=112, seed=1, progress=False)
        for seed in seeds:
            fp32, bf16 = (run(data, Path(tmp) / f"{amp}_{seed}", seed, amp, args) for amp in ("off", "bf16"))
            print(f"| {seed} | {100 * fp32['final']:.2f} | {100 * bf16['final']:.2f} | "
                  f"{100 * (bf16['final'] - fp32['final']):+.2f} | {100 * fp32['best']:.2f} | {100 * bf16['best']:.2f} "
                  f"| {fp32['seconds']:.0f} | {bf16['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
