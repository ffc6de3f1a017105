"""What OpenMP's wait policy costs torch on this CPU, idle and beside another busy process.

gsam sets OMP_WAIT_POLICY=PASSIVE (gsam/__init__.py). This runs the same work, tiny-model training steps
and inference, in fresh processes under ACTIVE (threads spin while they wait) and PASSIVE (they sleep),
first on an otherwise idle machine, then beside one other busy process (a second job on a shared box),
and prints the median seconds and the PASSIVE/ACTIVE ratio of each. The wait policy is read when
OpenMP loads, hence a process per measurement.

    python benchmarks/omp_wait.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys

WORK = r"""
import json, statistics, sys, time
import torch
from gsam.model import build_gsam
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
model = build_gsam("tiny", num_classes=3, train_size=(96, 96)).requires_grad_(True)
optimizer = torch.optim.Adam(model.parameters(), 1e-3)
images, target = torch.rand(4, 3, 96, 96) * 255, torch.randint(0, 3, (4, 96, 96))
def train():
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(images), target).backward()
    optimizer.step()
def infer():
    with torch.inference_mode():
        model.eval()(images[:1, :, :96, :96]); model.train()
out = {}
for name, step in (("train step", train), ("inference 96x96", infer)):
    step()
    times = []
    for _ in range(int(sys.argv[2])):
        start = time.perf_counter(); step(); times.append(time.perf_counter() - start)
    out[name] = statistics.median(times)
print(json.dumps(out))
"""


def spin(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def measure(policy: str, threads: int, repeats: int) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    result = subprocess.run([sys.executable, "-c", WORK, str(threads), str(repeats)], env=env, check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from gsam.machine import cpu_facts

    print(f"{cpu_facts().describe()}; {args.threads} torch threads; median of {args.repeats}\n")
    print("| machine | work | ACTIVE s | PASSIVE s | PASSIVE / ACTIVE |\n|---|---|---|---|---|")
    for label, busy in (("idle", 0), ("one other busy process", 1)):
        stop = multiprocessing.Event()
        spinners = [multiprocessing.Process(target=spin, args=(stop,)) for _ in range(busy)]
        for process in spinners:
            process.start()
        try:
            active, passive = measure("ACTIVE", args.threads, args.repeats), measure("PASSIVE", args.threads, args.repeats)
        finally:
            stop.set()
            for process in spinners:
                process.join()
        for work in active:
            print(f"| {label} | {work} | {active[work]:.3f} | {passive[work]:.3f} | {passive[work] / active[work]:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
