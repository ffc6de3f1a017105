"""Training throughput on this machine: crops/s for one optimizer step (forward, backward, Adam).

    python benchmarks/train_throughput.py --models tiny,vit_b --crops 128,256 --batch 2
Prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gsam.model import build_gsam
from gsam.train.losses import SegmentationLoss


def step_seconds(name: str, crop: int, batch: int, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    model = build_gsam(name, num_classes=3, train_size=(crop, crop)).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = SegmentationLoss(3, 255)
    images = torch.rand(batch, 3, crop, crop) * 255
    target = torch.randint(0, 3, (batch, crop, crop))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = loss_fn(model(images), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,vit_b")
    parser.add_argument("--crops", default="128,256")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"median of {args.steps} steps after {args.warmup} warm-up\n")
    print("| model | crop | s / step | crops / s |\n|---|---|---|---|")
    for name in args.models.split(","):
        for crop in (int(c) for c in args.crops.split(",")):
            seconds = step_seconds(name, crop, args.batch, args.steps, args.warmup)
            print(f"| {name} | {crop}x{crop} | {seconds:.3f} | {args.batch / seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
