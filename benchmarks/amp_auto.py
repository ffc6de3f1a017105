"""Is `--amp auto` as fast as the faster of fp32 and bf16 on this CPU? Training steps timed side by side.

Times steps of the tiny model (the demo's crop and batch) under --amp off, bf16 and auto, taking turns
so that a load that comes and goes hits all three alike, and prints a markdown table with each mode's
median step time and its ratio to the faster of fp32 and bf16. auto passes when it is within 10%. auto is
resolved as `gsam train` resolves it: the CPU probe, then the model's own step where the probe says bf16.

    python benchmarks/amp_auto.py --steps 6
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gsam.amp import autocast, choose_amp, confirm_on_training_step, grad_scaler
from gsam.demo import DEMO_BATCH, DEMO_CROP
from gsam.machine import cpu_facts
from gsam.model import build_gsam
from gsam.train.losses import SegmentationLoss


def stepper(amp: str):
    """One optimizer step of a fresh tiny model at the demo's crop and batch under `amp` (a resolved mode)."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = build_gsam("tiny", num_classes=3, train_size=DEMO_CROP).requires_grad_(True)
    optimizer, scaler = torch.optim.Adam(model.parameters(), 1e-3), grad_scaler(device, amp)
    loss_fn = SegmentationLoss(3, 255)
    images = torch.rand(DEMO_BATCH, 3, *DEMO_CROP) * 255
    target = torch.randint(0, 3, (DEMO_BATCH, *DEMO_CROP))

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = loss_fn(model(images).float(), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    cpu = torch.device("cpu")
    model = build_gsam("tiny", num_classes=3, train_size=DEMO_CROP)
    auto = confirm_on_training_step(choose_amp("auto", cpu), "auto", cpu, model=model,
                                    batch=(DEMO_BATCH, *DEMO_CROP), loss_fn=SegmentationLoss(3, 255), key=f"tiny|crop {DEMO_CROP}|batch {DEMO_BATCH}")
    modes = {"off": stepper("off"), "bf16": stepper("bf16"), "auto": stepper(auto.mode)}
    times: dict[str, list[float]] = {name: [] for name in modes}
    for step in modes.values():
        step()  # warm-up
    for _ in range(args.steps):
        for name, step in modes.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    best = min(median["off"], median["bf16"])
    print(f"{cpu_facts().describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"tiny model, batch {DEMO_BATCH}, crop {DEMO_CROP[0]}x{DEMO_CROP[1]}, median of {args.steps} steps\n"
          f"auto chose {auto.line()}\n")
    print("| --amp | runs | step ms | / faster of fp32, bf16 |\n|---|---|---|---|")
    for name in modes:
        runs = auto.mode if name == "auto" else name
        print(f"| {name} | {runs} | {1e3 * median[name]:.0f} | {median[name] / best:.2f} |")
    verdict = "within" if median["auto"] <= 1.10 * best else "NOT within"
    print(f"\nauto is {verdict} 10% of the faster mode ({median['auto'] / best:.2f}x)")


if __name__ == "__main__":
    main()
