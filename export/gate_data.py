"""The real images a precision variant is calibrated and gated on: a dataset folder's train and val splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsam.errors import GSAMError
from gsam.model.run import RunDir


@dataclass
class GateImages:
    """What a variant is gated (and int8 calibrated) on: uint8 RGB [H, W, 3] images at native sizes."""

    images: list[np.ndarray]  # the gate's images (val split)
    labels: list[np.ndarray] | None = None  # their class-id masks; ids outside 0..C-1 (-1: ignored) are not counted
    calib_images: list[np.ndarray] | None = None  # int8's calibration images (train split)


def spread(items: list, count: int) -> list:
    """`count` items spaced evenly over `items` (all of them when there are fewer)."""
    if count >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def load_gate_images(data: str | Path, calib_count: int = 32, gate_count: int = 64) -> GateImages:
    """Calibration images from DATA/train, gate images and masks from DATA/val, at their native sizes."""
    from gsam.data.dataset import normalize_mask, open_dataset_spec, scan_split
    from gsam.data.imageio import read_image, read_mask

    spec = open_dataset_spec(data)
    calib = [read_image(s.image) for s in spread(scan_split(Path(data), "train"), calib_count)]
    val = spread(scan_split(Path(data), "val"), gate_count)
    labels = []
    for sample in val:
        mask = normalize_mask(read_mask(sample.mask), spec).astype(np.int64)
        labels.append(np.where(mask == spec.ignore_index, -1, mask))
    return GateImages([read_image(s.image) for s in val], labels, calib)


def run_data_folder(source: str | Path) -> Path:
    """The dataset a run (or the run holding a .pt) was trained on; a one-line error with the way out."""
    source = Path(source)
    run = RunDir(source if source.is_dir() else source.parent)
    hint = "pass --calib-data DATA (a dataset folder with train/ and val/ splits)"
    if not run.config.is_file():
        raise GSAMError(f"{run.config}: no run config to find the training data in; {hint}")
    try:
        data = run.data_folder()
    except GSAMError as exc:
        raise GSAMError(f"{exc}; {hint}") from None
    if data is None:
        raise GSAMError(f"{run.config}: the training data (field 'train.data') is not here; {hint}")
    return data
