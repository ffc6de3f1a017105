"""CamVid as the official loader reads it: SRC/list/{split}_d.txt and {split}_l.txt name, line by
line, an image and its label file, both relative to SRC/image/ (the label files sit beside the
images there, e.g. image/train/X.png and image/trainannot/X.png).

Labels are read as 8-bit grayscale class ids: 0..10 are the 11 classes, 11 is void, written as the
ignore index 255. Splits: train and val are required, test is written when its lists exist.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from ..dataset import ClassSpec
from .common import (
    DatasetWriter,
    ImportLayoutError,
    check_ids,
    confined,
    grayscale_labels,
    require_dir,
    require_file,
)

VOID = 11
CLASSES = ClassSpec(
    ("sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car", "pedestrian",
     "bicyclist"),
    ignore_index=255,
    palette=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
             (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)),
)


def _read_list(path: Path, root: Path) -> list[tuple[str, Path]]:
    """(name, root / name) for each non-empty line; a name pointing outside `root` is refused naming its line."""
    return [(line.strip(), confined(root, line.strip(), f"{path}: line {number}"))
            for number, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]


def import_camvid(src: Path, writer: DatasetWriter, fold: int | None) -> ClassSpec:
    if fold is not None:
        raise ImportLayoutError("--fold: CamVid has fixed train/val/test lists, no folds")
    image_root = require_dir(src / "image", "CamVid images and label files")
    for split in ("train", "val", "test"):
        image_list, label_list = src / "list" / f"{split}_d.txt", src / "list" / f"{split}_l.txt"
        if split == "test" and not image_list.exists():
            continue
        images = _read_list(require_file(image_list, f"CamVid {split} image list"), image_root)
        labels = _read_list(require_file(label_list, f"CamVid {split} label list"), image_root)
        if len(images) != len(labels):
            raise ImportLayoutError(f"{label_list}: {len(labels)} lines but {image_list.name} has {len(images)}")
        for line, ((image_name, image), (_, label)) in enumerate(zip(images, labels), start=1):
            require_file(image, f"line {line} of {image_list.name}")
            require_file(label, f"line {line} of {label_list.name}")
            ids = grayscale_labels(label)
            check_ids(ids, range(VOID + 1), label, f"a CamVid class id 0..{VOID - 1} or void {VOID}")
            stem = PurePosixPath(image_name).with_suffix("").as_posix().replace("/", "_")
            size = writer.add_image_file(split, stem, image)
            writer.add_mask(split, stem, np.where(ids == VOID, 255, ids), label, size)
    return CLASSES
