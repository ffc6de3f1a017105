"""Training throughput on this machine: seconds per optimizer step (forward, backward, Adam) and peak memory.

Each (model, crop, precision) case runs in its own fresh process, so its peak resident memory is
its own. With several --amp modes the cases sit side by side and the table gives each mode's step
time as a ratio to the first mode's.

    python benchmarks/train_throughput.py --models tiny,vit_b --crops 128,256 --batch 2 --amp off,bf16
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time

import torch


def step_seconds(name: str, crop: int, batch: int, steps: int, warmup: int, amp: str, threads: int) -> tuple[float, float]:
    """(median seconds per step, peak resident GiB of this process)."""
    from gsam.amp import autocast, check_amp, grad_scaler
    from gsam.model import build_gsam
    from gsam.train.losses import SegmentationLoss

    torch.set_num_threads(threads)
    device = torch.device("cpu")
    check_amp(amp, device)
    torch.manual_seed(0)
    model = build_gsam(name, num_classes=3, train_size=(crop, crop)).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scaler = grad_scaler(device, amp)
    loss_fn = SegmentationLoss(3, 255)
    images = torch.rand(batch, 3, crop, crop) * 255
    target = torch.randint(0, 3, (batch, crop, crop))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        with autocast(device, amp):
            loss = loss_fn(model(images).float(), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _in_fresh_process(*args) -> tuple[float, float]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(step_seconds, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,vit_b")
    parser.add_argument("--crops", default="128,256")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--amp", default="off", help="Comma-separated autocast modes, e.g. off,bf16 (CPU: off, bf16).")
    args = parser.parse_args()
    modes = args.amp.split(",")
    names = {"off": "fp32"}
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, CPU, batch {args.batch}, median of {args.steps} steps "
          f"after {args.warmup} warm-up; each case in a fresh process (peak RSS = that process's maximum)\n")
    head = "| model | crop |" + "".join(f" {names.get(m, m)} s / step | {names.get(m, m)} crops / s "
                                      f"| {names.get(m, m)} peak RSS GiB |" for m in modes)
    head += "".join(f" {names.get(m, m)} / {names.get(modes[0], modes[0])} |" for m in modes[1:])
    print(head + "\n|" + "---|" * (2 + 3 * len(modes) + len(modes) - 1), flush=True)
    for name in args.models.split(","):
        for crop in (int(c) for c in args.crops.split(",")):
            cases = [_in_fresh_process(name, crop, args.batch, args.steps, args.warmup, m, threads) for m in modes]
            row = f"| {name} | {crop}x{crop} |" + "".join(
                f" {s:.3f} | {args.batch / s:.2f} | {rss:.2f} |" for s, rss in cases)
            row += "".join(f" {s / cases[0][0]:.2f}x |" for s, _ in cases[1:])
            print(row, flush=True)


if __name__ == "__main__":
    main()
