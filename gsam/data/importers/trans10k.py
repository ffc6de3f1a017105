"""Trans10k as the official loader reads it: SRC/train/{images,masks}/ and, for val and test,
SRC/{split}/{easy,hard}/{images,masks}/, each X.jpg with its mask X_mask.png (test optional).

Masks: the mean of the first three channels is 0 (background), 85 (things) or 255 (stuff),
written as classes 0, 1, 2; any other value is an error naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..dataset import ClassSpec
from .common import DatasetWriter, ImportLayoutError, read_with_pillow, require_dir, sorted_files

CLASSES = ClassSpec(("background", "things", "stuff"), ignore_index=255)
_VALUES = {0.0: 0, 85.0: 1, 255.0: 2}


def decode_mask(path: Path) -> np.ndarray:
    array = read_with_pillow(path, "mask").astype(np.float64)
    mean = array[:, :, :3].mean(axis=-1) if array.ndim == 3 else array
    out = np.zeros(mean.shape, dtype=np.uint8)
    known = np.zeros(mean.shape, dtype=bool)
    for value, class_id in _VALUES.items():
        hit = mean == value
        out[hit], known = class_id, known | hit
    if not known.all():
        raise ImportLayoutError(f"{path}: mask value {mean[~known][0]:g}; expected 0, 85 or 255 (channel mean)")
    return out


def _import_pairs(split: str, images_dir: Path, masks_dir: Path, prefix: str, writer: DatasetWriter) -> None:
    require_dir(images_dir, f"Trans10k {split} images")
    require_dir(masks_dir, f"Trans10k {split} masks")
    images = [p for p in sorted_files(images_dir) if p.suffix.lower() == ".jpg"]
    if not images:
        raise ImportLayoutError(f"{images_dir}: no .jpg images")
    for image in images:
        mask = masks_dir / f"{image.stem}_mask.png"
        if not mask.is_file():
            raise ImportLayoutError(f"{image}: no mask {mask}")
        size = writer.add_image_file(split, prefix + image.stem, image)
        writer.add_mask(split, prefix + image.stem, decode_mask(mask), mask, size)


def import_trans10k(src: Path, writer: DatasetWriter, fold: int | None) -> ClassSpec:
    if fold is not None:
        raise ImportLayoutError("--fold: Trans10k has fixed train/val/test splits, no folds")
    _import_pairs("train", src / "train" / "images", src / "train" / "masks", "", writer)
    for split in ("val", "test"):
        if split == "test" and not (src / split).exists():
            continue
        require_dir(src / split, f"Trans10k {split} split with easy/ and hard/")
        for difficulty in ("easy", "hard"):
            folder = src / split / difficulty
            _import_pairs(split, folder / "images", folder / "masks", f"{difficulty}_", writer)
    return CLASSES
