"""Kvasir-SEG and Synapse as the official loaders read them: the preprocessed arrays
SRC/datamodel/{split}_data_{k}.npy (images, N x H x W or N x H x W x C) and
SRC/datamodel/{split}_label_{k}.npy (N x H x W) for fold k (the reference's `cross`, 1 by default)
and split in train, val, test (test optional).

Images: 8-bit arrays become PNG; any other dtype (e.g. float or 16-bit CT slices) a TIFF of the
same dtype, so nothing is lost in the file. gsam's reader brings such images to 0..255 when it
trains (16-bit by /257, floats in 0..1 by x255, other values clipped to 0..255), where the
reference casts with np.uint8.
Labels: Kvasir-SEG class 1 where the label is above 200 (polyp), else 0. Synapse: integer organ
ids 0..8, written as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..dataset import ClassSpec
from .common import (
    DatasetWriter,
    ImportLayoutError,
    check_ids,
    require_dir,
    require_file,
)

KVASIR = ClassSpec(("background", "polyp"), ignore_index=-1)
SYNAPSE = ClassSpec(("background", "aorta", "gallbladder", "kidney_left", "kidney_right", "liver", "pancreas",
                     "spleen", "stomach"), ignore_index=255)


def _load(path: Path, what: str) -> np.ndarray:
    require_file(path, what)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ImportLayoutError(f"{path}: cannot read array ({str(exc).splitlines()[0]})") from None


def _kvasir_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    return (np.asarray(labels) > 200).astype(np.uint8)


def _synapse_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise ImportLayoutError(f"{path}: labels are not whole numbers; expected organ ids 0..8")
    check_ids(labels, range(9), path, "a Synapse organ id 0..8")
    return labels.astype(np.uint8)


def _import_folds(src: Path, writer: DatasetWriter, fold: int | None, name: str,
                  decode: Callable[[np.ndarray, Path], np.ndarray]) -> None:
    fold = 1 if fold is None else fold
    folder = require_dir(src / "datamodel", f"{name} preprocessed arrays")
    for split in ("train", "val", "test"):
        data_path, label_path = folder / f"{split}_data_{fold}.npy", folder / f"{split}_label_{fold}.npy"
        if split == "test" and not data_path.exists():
            continue
        data = _load(data_path, f"{name} {split} images of fold {fold}")
        labels = _load(label_path, f"{name} {split} labels of fold {fold}")
        if data.ndim not in (3, 4) or (data.ndim == 4 and data.shape[3] not in (1, 3)):
            raise ImportLayoutError(f"{data_path}: array shape {data.shape}; expected N x H x W or N x H x W x 3")
        if labels.ndim != 3 or labels.shape[:3] != data.shape[:3]:
            raise ImportLayoutError(f"{label_path}: array shape {labels.shape}; expected N x H x W = "
                                    f"{' x '.join(map(str, data.shape[:3]))} to match {data_path.name}")
        for index in range(data.shape[0]):
            stem = f"{split}_{fold}_{index:05d}"
            image = np.asarray(data[index])
            writer.add_image_array(split, stem, image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image,
                                   f"{data_path}[{index}]")
            writer.add_mask(split, stem, decode(labels[index], Path(f"{label_path}[{index}]")), f"{label_path}[{index}]")


def import_kvasir(src: Path, writer: DatasetWriter, fold: int | None) -> ClassSpec:
    _import_folds(src, writer, fold, "Kvasir-SEG", _kvasir_labels)
    return KVASIR


def import_synapse(src: Path, writer: DatasetWriter, fold: int | None) -> ClassSpec:
    _import_folds(src, writer, fold, "Synapse", _synapse_labels)
    return SYNAPSE
