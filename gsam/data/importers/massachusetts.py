"""M-Building (Massachusetts buildings) as the official loader reads it: SRC/tiff/{split}/ images and
SRC/tiff/{split}_labels/ labels for split in train, val, test (test optional), paired by file stem.

Labels: class 1 where the red channel is below 150, class 0 elsewhere. In this dataset buildings
are bright in the labels, so the reference's class 0 is building and class 1 the rest; the two-class
mIoU does not depend on which is which.
"""

from __future__ import annotations

from pathlib import Path

from ..dataset import ClassSpec
from .common import (
    DatasetWriter,
    ImportLayoutError,
    red_channel_labels,
    require_dir,
    sorted_files,
)

CLASSES = ClassSpec(("building", "non_building"), ignore_index=-1)


def import_m_building(src: Path, writer: DatasetWriter, fold: int | None) -> ClassSpec:
    if fold is not None:
        raise ImportLayoutError("--fold: M-Building has fixed train/val/test folders, no folds")
    tiff = require_dir(src / "tiff", "M-Building tiff/{train,val,test} and tiff/*_labels")
    for split in ("train", "val", "test"):
        if split == "test" and not (tiff / split).exists():
            continue
        images = sorted_files(require_dir(tiff / split, f"M-Building {split} images"))
        labels = {p.stem: p for p in sorted_files(require_dir(tiff / f"{split}_labels", f"M-Building {split} labels"))}
        stems = {p.stem for p in images}
        for image in images:
            label = labels.get(image.stem)
            if label is None:
                raise ImportLayoutError(f"{image}: no label named {image.stem}.* in {tiff / f'{split}_labels'}")
            size = writer.add_image_file(split, image.stem, image)
            writer.add_mask(split, image.stem, red_channel_labels(label), label, size)
        for stem, label in labels.items():
            if stem not in stems:
                raise ImportLayoutError(f"{label}: label has no image named {stem}.* in {tiff / split}")
    return CLASSES
