"""How many threads torch should use on a shared machine, and whether OpenMP's wait policy matters.

The evidence behind gsam.machine.choose_threads (one thread per core other work leaves idle): the same
work, tiny-model training steps and inference, in fresh processes under OpenMP's default wait policy,
ACTIVE (threads spin while they wait) and PASSIVE (they sleep), and with one thread, first on an
otherwise idle machine, then beside one and two other busy processes, printing the median seconds of
each. The wait policy is read when OpenMP loads, hence a process per measurement.

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
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if policy != "unset":
        env["OMP_WAIT_POLICY"] = policy
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
    cases = [("unset", args.threads), ("ACTIVE", args.threads), ("PASSIVE", args.threads), ("unset", 1)]
    names = [f"{policy}, {threads} thread{'s' * (threads > 1)}" for policy, threads in cases]
    print("| machine | work | " + " | ".join(f"{name} s" for name in names) + " |\n|---|---|"
          + "---|" * len(cases))
    for label, busy in (("idle", 0), ("one other busy process", 1), ("two other busy processes", 2)):
        stop = multiprocessing.Event()
        spinners = [multiprocessing.Process(target=spin, args=(stop,)) for _ in range(busy)]
        for process in spinners:
            process.start()
        try:
            results = [measure(policy, threads, args.repeats) for policy, threads in cases]
        finally:
            stop.set()
            for process in spinners:
                process.join()
        for work in results[0]:
            print(f"| {label} | {work} | " + " | ".join(f"{r[work]:.3f}" for r in results) + " |", flush=True)


if __name__ == "__main__":
    main()
