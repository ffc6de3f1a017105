"""ISBI2012 as the official loader reads it: SRC/Image/<folder>/<files>, SRC/Label/<folder>/<files>.

Folders are paired in sorted order, and files within a folder too. The split is by folder: with
K = 3, the folder at sorted position i is validation when i % K == fold (the reference's `cross`,
0 by default), training otherwise. The reference uses that same held-out set for validation and for
its test, so only train and val are written. Labels: class 1 where the red channel is below 150
(the membranes, dark in the label images), class 0 elsewhere.
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

FOLDS = 3
CLASSES = ClassSpec(("cell", "membrane"), ignore_index=-1)


def _folders(root: Path) -> list[Path]:
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    for entry in entries:
        if not entry.is_dir():
            raise ImportLayoutError(f"{entry}: expected only sub-folders of images in {root} (the official layout)")
    return entries


def import_isbi2012(src: Path, writer: DatasetWriter, fold: int | None) -> ClassSpec:
    fold = 0 if fold is None else fold
    if not 0 <= fold < FOLDS:
        raise ImportLayoutError(f"--fold {fold}: ISBI2012 has folds 0..{FOLDS - 1}")
    images = _folders(require_dir(src / "Image", "ISBI2012 images, one sub-folder per group"))
    labels = _folders(require_dir(src / "Label", "ISBI2012 labels, folders beside Image/"))
    if len(images) != len(labels):
        raise ImportLayoutError(f"{src / 'Label'}: {len(labels)} folders but Image/ has {len(images)}")
    for index, (image_dir, label_dir) in enumerate(zip(images, labels)):
        split = "val" if index % FOLDS == fold else "train"
        image_files, label_files = sorted_files(image_dir), sorted_files(label_dir)
        if len(image_files) != len(label_files):
            raise ImportLayoutError(f"{label_dir}: {len(label_files)} label files but {image_dir} has "
                                    f"{len(image_files)} images")
        for image, label in zip(image_files, label_files):
            stem = f"{image_dir.name}_{image.stem}"
            size = writer.add_image_file(split, stem, image)
            writer.add_mask(split, stem, red_channel_labels(label), label, size)
    return CLASSES
