"""Cityscapes as the official loader reads it: SRC/leftImg8bit/{split}/<city>/*_leftImg8bit.png and
SRC/gtFine/{split}/<city>/*_gtFine_labelIds.png for train and val (the reference tests on val; the
public test labels are withheld).

labelIds (0..33) map to the 19 training classes of the Cityscapes benchmark; every other id
(void, rare and unlabelled classes) becomes the ignore index 255. The reference code writes 19
for those pixels and sets its loss's ignore index to 19; the pixels left out are the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..dataset import ClassSpec
from ..imageio import read_mask
from .common import DatasetWriter, ImportLayoutError, check_ids, require_dir

IGNORE = 255
# labelId -> trainId of the 19 evaluated classes (the public Cityscapes label definition).
LABEL_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                     25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CLASSES = ClassSpec(
    ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign", "vegetation",
     "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"),
    ignore_index=IGNORE,
    palette=((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
             (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
             (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)),
)
IMAGE_SUFFIX, LABEL_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"


def train_ids(label_ids: np.ndarray) -> np.ndarray:
    """labelIds -> trainIds with 255 for everything outside the 19 classes."""
    table = np.full(256, IGNORE, dtype=np.uint8)
    for label_id, train_id in LABEL_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table[label_ids]


def import_cityscapes(src: Path, writer: DatasetWriter, fold: int | None) -> ClassSpec:
    if fold is not None:
        raise ImportLayoutError("--fold: Cityscapes has fixed train/val splits, no folds")
    for split in ("train", "val"):
        image_root = require_dir(src / "leftImg8bit" / split, f"Cityscapes {split} images, one folder per city")
        label_root = require_dir(src / "gtFine" / split, f"Cityscapes {split} labels, one folder per city")
        images = sorted(image_root.glob(f"*/*{IMAGE_SUFFIX}"))
        if not images:
            raise ImportLayoutError(f"{image_root}: no <city>/*{IMAGE_SUFFIX} images")
        wanted = set()
        for image in images:
            base = image.name[: -len(IMAGE_SUFFIX)]
            label = label_root / image.parent.name / f"{base}{LABEL_SUFFIX}"
            if not label.is_file():
                raise ImportLayoutError(f"{image}: no label {label}")
            wanted.add(label)
            ids = read_mask(label)
            check_ids(ids, range(34), label, "a Cityscapes labelId 0..33")
            size = writer.add_image_file(split, base, image)
            writer.add_mask(split, base, train_ids(ids), label, size)
        for label in sorted(label_root.glob(f"*/*{LABEL_SUFFIX}")):
            if label not in wanted:
                raise ImportLayoutError(f"{label}: label has no image in {image_root / label.parent.name}")
    return CLASSES
