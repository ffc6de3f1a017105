"""Which training recipe lets `gsam demo` finish in minutes on any 2-core CPU and still segment well?

Trains the tiny model on the demo's generated dataset (gsam.demo.DEMO_DATA) with each candidate recipe
(crop, batch, epochs, learning rate) under --amp auto, then scores it at native size, and prints a
markdown row per recipe: optimizer steps, wall and CPU seconds of training, validation mIoU and the
worst class's IoU. Run it on each CPU kind; the demo's recipe (gsam/demo.py) is the cheapest that
reaches mIoU 0.90 with margin on all of them.

    python benchmarks/demo_recipe.py --recipes 96x4x40x2e-3,64x4x30x2e-3 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from gsam.data.dataset import SegmentationDataset
from gsam.data.synth import write_synthetic_dataset
from gsam.demo import DEMO_DATA
from gsam.machine import cpu_facts
from gsam.model.run import load_trained
from gsam.train.config import TrainConfig
from gsam.train.engine import evaluate
from gsam.train.trainer import train


def parse_recipe(text: str) -> dict:
    """'64x4x30x2e-3' -> crop 64, batch 4, 30 epochs, lr 2e-3."""
    crop, batch, epochs, lr = text.split("x")
    return {"crop": int(crop), "batch": int(batch), "epochs": int(epochs), "lr": float(lr)}


def run(data: Path, out: Path, recipe: dict, spec) -> dict:
    cfg = TrainConfig(data=str(data), out=str(out), model="tiny", epochs=recipe["epochs"], batch_size=recipe["batch"],
                      lr=recipe["lr"], workers=0, crop=(recipe["crop"], recipe["crop"]), device="cpu",
                      val_every=max(1, recipe["epochs"] // 4))
    wall, cpu = time.perf_counter(), time.process_time()
    train(cfg, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    model, _ = load_trained(out)
    result = evaluate(model, SegmentationDataset.open(data, "val", spec), spec.num_classes, torch.device("cpu"))
    steps = recipe["epochs"] * (DEMO_DATA["train"] // recipe["batch"])
    return {"steps": steps, "wall": wall, "cpu": cpu, "miou": result["miou"], "worst": min(result["iou"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="96x4x40x2e-3,64x4x30x2e-3,64x8x30x3e-3,80x4x25x2e-3")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_facts().describe()}; torch {torch.__version__}, {args.threads} threads, amp auto\n")
    print("| crop | batch | epochs | lr | steps | train wall s | train CPU s | val mIoU | worst class IoU |\n"
          "|---|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        spec = write_synthetic_dataset(Path(tmp) / "data", progress=False, **DEMO_DATA)
        for index, text in enumerate(args.recipes.split(",")):
            recipe = parse_recipe(text)
            r = run(Path(tmp) / "data", Path(tmp) / f"run{index}", recipe, spec)
            print(f"| {recipe['crop']} | {recipe['batch']} | {recipe['epochs']} | {recipe['lr']:g} | {r['steps']} | "
                  f"{r['wall']:.0f} | {r['cpu']:.0f} | {r['miou']:.4f} | {r['worst']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
