"""The real images a precision variant is calibrated and gated on: a dataset folder's train and val splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import GSAMError


@dataclass
class GateImages:
    calib_images: list[np.ndarray]  # uint8 RGB [H, W, 3], native sizes (train split)
    images: list[np.ndarray]  # the gate's images (val split)
    labels: list[np.ndarray]  # their class-id masks; ids outside 0..C-1 are not counted


def spread(items: list, count: int) -> list:
    """`count` items spaced evenly over `items` (all of them when there are fewer)."""
    if count >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def load_gate_images(data: str | Path, calib_count: int = 32, gate_count: int = 64) -> GateImages:
    """Calibration images from DATA/train, gate images and masks from DATA/val, at their native sizes."""
    from ..data.dataset import normalize_mask, open_dataset_spec, scan_split
    from ..data.imageio import read_image, read_mask

    spec = open_dataset_spec(data)
    calib = [read_image(s.image) for s in spread(scan_split(Path(data), "train"), calib_count)]
    val = spread(scan_split(Path(data), "val"), gate_count)
    labels = []
    for sample in val:
        mask = normalize_mask(read_mask(sample.mask), spec).astype(np.int64)
        labels.append(np.where(mask == spec.ignore_index, -1, mask))
    return GateImages(calib, [read_image(s.image) for s in val], labels)


def run_data_folder(source: str | Path) -> Path:
    """The dataset a run was trained on: `data` in the train section of RUN/config.yaml."""
    source = Path(source)
    config = (source if source.is_dir() else source.parent) / "config.yaml"
    hint = "pass --calib-data DATA (a dataset folder with train/ and val/ splits)"
    if not config.is_file():
        raise GSAMError(f"{config}: no run config to find the training data in; {hint}")
    try:
        data = (yaml.safe_load(config.read_text()) or {}).get("train", {}).get("data")
    except (yaml.YAMLError, AttributeError):
        raise GSAMError(f"{config}: not a run config (expected a 'train' section with 'data'); {hint}") from None
    if not data or not Path(data).is_dir():
        raise GSAMError(f"{config}: the training data {data!r} is not here; {hint}")
    return Path(data)
