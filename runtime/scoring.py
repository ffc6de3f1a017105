"""Score predictors on a dataset split, all on the same images: per-class IoU, mIoU, pixel accuracy, how
often their masks agree with the first one's, and (when asked) each one's latency per image.

`gsam eval` scores one predictor, `gsam compare` several; any artifact `gsam.load` takes can be scored,
so the mIoU of an ONNX variant, an engine or a running server is measured the same way as a run's.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gsam.data.dataset import ClassSpec, check_samples, normalize_mask, scan_split
from gsam.data.imageio import read_mask
from gsam.data.metrics import ConfusionMatrix
from gsam.errors import GSAMError

from .predictor import Predictor


@dataclass
class Score:
    """One predictor's figures on the split."""

    name: str
    iou: list[float | None] = field(default_factory=list)
    miou: float = 0.0
    pixel_acc: float = 0.0
    agreement: float | None = None  # fraction of pixels whose class equals the first predictor's
    latency_ms: float | None = None  # median per image, with --latency

    def to_dict(self) -> dict:
        return {"name": self.name, "iou": self.iou, "miou": self.miou, "pixel_acc": self.pixel_acc,
                **({"agreement": self.agreement} if self.agreement is not None else {}),
                **({"latency_ms": self.latency_ms} if self.latency_ms is not None else {})}


def check_classes(predictor: Predictor, spec: ClassSpec, data: str | Path, name: str) -> None:
    """A model's output channels must fit the dataset's classes (1 or 2 channels for binary data)."""
    channels = predictor.facts.num_classes
    expected = {1, 2} if spec.binary else {spec.num_classes}
    if channels not in expected:
        raise GSAMError(f"{name}: model has {channels} output channels but {data} has {spec.num_classes} classes")


def score(predictors: dict[str, Predictor], data: str | Path, split: str, spec: ClassSpec, *, latency: bool = False,
          progress: bool = False) -> tuple[list[Score], int]:
    """(one Score per predictor, in order; images scored). Images go one at a time through every predictor."""
    from tqdm import tqdm

    samples = scan_split(Path(data), split)
    check_samples(samples, spec, progress=progress)
    for name, predictor in predictors.items():
        check_classes(predictor, spec, data, name)
    matrices = {name: ConfusionMatrix(spec.num_classes) for name in predictors}
    agree, pixels = dict.fromkeys(predictors, 0), 0
    times: dict[str, list[float]] = {name: [] for name in predictors}
    for sample in tqdm(samples, desc="evaluating", disable=not progress, leave=False):
        target = torch.from_numpy(normalize_mask(read_mask(sample.mask), spec).astype(np.int64))
        first = None
        for name, predictor in predictors.items():
            started = time.perf_counter()
            mask = predictor.predict(sample.image).mask
            times[name].append((time.perf_counter() - started) * 1000)
            matrices[name].update(torch.from_numpy(mask.astype(np.int64)), target, spec.ignore_index)
            first = mask if first is None else first
            agree[name] += int((mask == first).sum())
        pixels += first.size
    scores = []
    for index, name in enumerate(predictors):
        figures = matrices[name].compute()
        scores.append(Score(name, figures["iou"], figures["miou"], figures["pixel_acc"],
                            agreement=agree[name] / max(pixels, 1) if index else None,
                            latency_ms=statistics.median(times[name][1:] or times[name]) if latency else None))
    return scores, len(samples)


def iou_table(names: list[str], scores: list[Score]) -> list[str]:
    """The per-class IoU table, one column per predictor, then mIoU, pixel accuracy, agreement, latency."""
    width = max([len(n) for n in names] + [len("pixel acc"), len("agreement")])
    columns = [max(10, len(s.name)) for s in scores] if len(scores) > 1 else [len("IoU")]

    def row(label: str, values) -> str:
        return f"{label:<{width}}" + "".join(f"  {v:>{c}}" for v, c in zip(values, columns))

    def number(value, fmt: str = ".4f") -> str:
        return "n/a" if value is None else format(value, fmt)

    lines = [row("class", [s.name for s in scores] if len(scores) > 1 else ["IoU"])]
    lines += [row(name, [number(s.iou[i]) for s in scores]) for i, name in enumerate(names)]
    lines += [row("mIoU", [number(s.miou) for s in scores]), row("pixel acc", [number(s.pixel_acc) for s in scores])]
    if len(scores) > 1:
        lines.append(row("agreement", ["(ref)"] + [number(s.agreement, ".4%") for s in scores[1:]]))
    if any(s.latency_ms is not None for s in scores):
        lines.append(row("ms/image", [number(s.latency_ms, ".1f") for s in scores]))
    return lines
