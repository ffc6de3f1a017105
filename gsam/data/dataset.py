"""The dataset folder layout and its checks.

    DATA/classes.yaml                  optional: names, ignore_index, palette
    DATA/{train,val,test}/images/*.png|jpg|tif
    DATA/{train,val,test}/masks/*.png  class ids, same stem and size as the image

Every problem is found when the dataset opens, before any training step, and is
reported in one line naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import GSAMError
from .imageio import IMAGE_SUFFIXES, image_size, read_image, read_mask
from .palette import default_palette

DEFAULT_IGNORE_INDEX = 255


class DatasetError(GSAMError):
    """The dataset folder does not follow the layout."""


@dataclass(frozen=True)
class ClassSpec:
    """Class names, the ignore index and display colours of a dataset."""

    names: tuple[str, ...]
    # None: 255 for multi-class data; for binary data -1 (nothing ignored, so 255 can mean foreground).
    ignore_index: int | None = None
    palette: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.ignore_index is None:
            object.__setattr__(self, "ignore_index", -1 if len(self.names) == 2 else DEFAULT_IGNORE_INDEX)
        if not self.palette:
            object.__setattr__(self, "palette", tuple(default_palette(len(self.names))))

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def binary(self) -> bool:
        """Two classes: masks may use 0/255 for background/foreground."""
        return len(self.names) == 2

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "ignore_index": self.ignore_index, "palette": [list(c) for c in self.palette]}


def load_class_spec(path: Path) -> ClassSpec:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("names"), list) or len(data["names"]) < 2:
        raise DatasetError(f"{path}: field 'names' must be a list of at least 2 class names (background first)")
    ignore = data.get("ignore_index")
    if ignore is not None and (not isinstance(ignore, int) or ignore < -1):
        raise DatasetError(f"{path}: field 'ignore_index' must be an integer >= -1, got {ignore!r}")
    palette = data.get("palette") or ()
    if palette and (len(palette) != len(data["names"]) or
                    not all(isinstance(c, (list, tuple)) and len(c) == 3 for c in palette)):
        raise DatasetError(f"{path}: field 'palette' must hold one [r, g, b] per class ({len(data['names'])})")
    return ClassSpec(tuple(str(n) for n in data["names"]), ignore, tuple(tuple(int(v) for v in c) for c in palette))


def normalize_mask(mask: np.ndarray, spec: ClassSpec) -> np.ndarray:
    """Binary datasets may store foreground as 255: read it as 1."""
    if spec.binary and spec.ignore_index != 255:
        mask = np.where(mask == 255, 1, mask)
    return mask


@dataclass
class Sample:
    image: Path
    mask: Path


def _files_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def scan_split(root: Path, split: str) -> list[Sample]:
    """Pair images and masks of one split by file stem; fail on any orphan or an empty split."""
    images_dir, masks_dir = root / split / "images", root / split / "masks"
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: missing folder; expected {root}/{split}/images and {root}/{split}/masks")
    images, masks = _files_by_stem(images_dir), _files_by_stem(masks_dir)
    if not images:
        raise DatasetError(f"{images_dir}: empty split, no .png/.jpg/.tif images")
    for stem, path in images.items():
        if stem not in masks:
            raise DatasetError(f"{path}: image has no mask (expected {masks_dir}/{stem}.png)")
    for stem, path in masks.items():
        if stem not in images:
            raise DatasetError(f"{path}: mask has no image (expected {images_dir}/{stem}.png or .jpg/.tif)")
    return [Sample(images[s], masks[s]) for s in images]


def infer_class_spec(samples: list[Sample]) -> ClassSpec:
    """Without classes.yaml: 0/255 masks are binary, otherwise ids 0..max (255 is ignored)."""
    values: set[int] = set()
    for sample in samples:
        values.update(np.unique(read_mask(sample.mask)).tolist())
    if values <= {0, 1, 255} and 255 in values and 1 not in values:
        return ClassSpec(("background", "foreground"))
    ids = [v for v in values if v != DEFAULT_IGNORE_INDEX]
    count = max(max(ids, default=0) + 1, 2)
    return ClassSpec(tuple(["background"] + [f"class_{i}" for i in range(1, count)]))


def open_dataset_spec(root: str | Path) -> ClassSpec:
    """The dataset's classes: classes.yaml when present, otherwise inferred from the train masks."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    yaml_path = root / "classes.yaml"
    if yaml_path.is_file():
        return load_class_spec(yaml_path)
    return infer_class_spec(scan_split(root, "train"))


def check_samples(samples: list[Sample], spec: ClassSpec, progress: bool = False) -> None:
    """Read every mask once: sizes must match their images, ids must be declared classes."""
    for sample in tqdm(samples, desc="checking masks", disable=not progress, leave=False):
        mask = normalize_mask(read_mask(sample.mask), spec)
        size = image_size(sample.image)
        if tuple(mask.shape) != tuple(size):
            raise DatasetError(f"{sample.mask}: mask is {mask.shape[0]}x{mask.shape[1]} but its image "
                               f"{sample.image.name} is {size[0]}x{size[1]}")
        bad = sorted(set(np.unique(mask).tolist()) - set(range(spec.num_classes)) - {spec.ignore_index})
        if bad:
            raise DatasetError(f"{sample.mask}: class id {bad[0]} outside the {spec.num_classes} declared classes "
                               f"0..{spec.num_classes - 1} (ignore index {spec.ignore_index})")
        read_image(sample.image)  # decodes: an unreadable image fails here, not mid-epoch


@dataclass
class SegmentationDataset(Dataset):
    """Samples of one split as (image float32 [3, H, W] in 0..255, mask int64 [H, W])."""

    samples: list[Sample]
    spec: ClassSpec
    transform: Callable | None = None
    sizes: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def open(cls, root: str | Path, split: str, spec: ClassSpec | None = None, transform: Callable | None = None, *,
             check: bool = True, progress: bool = False) -> "SegmentationDataset":
        root = Path(root)
        spec = spec or open_dataset_spec(root)
        samples = scan_split(root, split)
        if check:
            check_samples(samples, spec, progress=progress)
        return cls(samples, spec, transform)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.samples[index]
        image = torch.from_numpy(read_image(sample.image)).permute(2, 0, 1)
        mask = torch.from_numpy(normalize_mask(read_mask(sample.mask), self.spec))
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image.float(), mask.long()
