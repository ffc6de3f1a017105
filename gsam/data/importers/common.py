"""What every importer shares: a dataset written whole or not at all, linked images, decoded masks."""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Sequence

import numpy as np
import yaml
from PIL import Image

from ...errors import GSAMError
from ...io import apply_umask
from ..dataset import ClassSpec
from ..imageio import IMAGE_SUFFIXES, image_size, read_image

LINK_MODES = ("symlink", "hardlink", "copy")
# What the official layouts hold, plus BMP (converted to PNG once). Pillow is never asked to guess among
# all its plugins: some (EPS) hand the bytes to external programs.
IMPORT_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")


class ImportLayoutError(GSAMError):
    """The source folder is not in the layout the official loaders read, or its files disagree."""


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ImportLayoutError(f"{path}: missing folder ({what})")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ImportLayoutError(f"{path}: missing file ({what})")
    return path


def red_channel_labels(path: Path) -> np.ndarray:
    """The official binary decoding of ISBI2012 and M-Building labels: class 1 where the red channel
    (of the label read as 8-bit RGB) is below 150, class 0 elsewhere."""
    return (read_image(path)[:, :, 0] < 150).astype(np.uint8)


def read_with_pillow(path: Path, what: str, mode: str | None = None) -> np.ndarray:
    """A file in IMPORT_FORMATS, converted to `mode` (None: as stored); a one-line error naming the file otherwise."""
    try:
        with Image.open(path, formats=IMPORT_FORMATS) as img:
            return np.asarray(img.convert(mode) if mode else img)
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0]
        if reason.startswith("cannot identify image file"):
            reason = f"not a {', '.join(IMPORT_FORMATS)} file"
        raise ImportLayoutError(f"{path}: cannot read {what} ({reason})") from None


def confined(root: Path, name: str, where: str) -> Path:
    """root / name, where `name` comes from a list file: absolute names and names that climb out of
    `root` ('../x') are refused with one line naming `where` (the list file and line)."""
    relative = PurePosixPath(name.replace("\\", "/"))
    if relative.is_absolute() or PureWindowsPath(name).drive or \
            posixpath.normpath(relative.as_posix()).split("/")[0] == "..":
        raise ImportLayoutError(f"{where}: {name!r} points outside {root}; list lines must name files under it")
    return root / relative


def grayscale_labels(path: Path) -> np.ndarray:
    """A label file read as 8-bit grayscale, the way the official CamVid loader reads it."""
    return read_with_pillow(path, "label", "L")


def check_ids(labels: np.ndarray, allowed: Sequence[int], path: Path | str, meaning: str) -> None:
    """Every label value must be one of `allowed`; otherwise one line naming the file and the value."""
    values = np.unique(labels)
    bad = values[~np.isin(values, np.asarray(allowed))]
    if bad.size:
        raise ImportLayoutError(f"{path}: label value {bad[0]} is not {meaning}")


@dataclass
class DatasetWriter:
    """Writes OUT/{split}/{images,masks} and OUT/classes.yaml into a hidden folder beside OUT, renamed
    onto OUT only when everything succeeded: a failed import leaves nothing behind."""

    out: Path
    link: str = "symlink"
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.link not in LINK_MODES:
            raise GSAMError(f"--link must be one of {', '.join(LINK_MODES)}; got {self.link!r}")
        self.out = Path(self.out)
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise GSAMError(f"{self.out}: already exists and is not an empty folder; choose a new --out")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".importing", dir=self.out.parent))
        apply_umask(self.tmp, folder=True)  # mkdtemp's 0700 would make the dataset unreadable to others
        self._stems: set[tuple[str, str]] = set()

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _target(self, split: str, kind: str, stem: str, suffix: str, source: Path | str) -> Path:
        if kind == "masks":
            if (split, stem) in self._stems:
                raise ImportLayoutError(f"{source}: a second sample named {stem!r} in split {split}")
            self._stems.add((split, stem))
            self.counts[split] = self.counts.get(split, 0) + 1
        folder = self.tmp / split / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{stem}{suffix}"

    def add_image_file(self, split: str, stem: str, source: Path) -> tuple[int, int]:
        """Link (or copy) an image our reader decodes as it is; other formats are converted to PNG once.
        Returns the image's (height, width)."""
        source = Path(source)
        if source.suffix.lower() not in IMAGE_SUFFIXES:
            array = read_image_any(source)
            self.add_image_array(split, stem, array, source)
            return array.shape[:2]
        size = image_size(source)
        target = self._target(split, "images", stem, source.suffix.lower(), source)
        if self.link == "symlink":
            os.symlink(source.resolve(), target)
        elif self.link == "hardlink":
            try:
                os.link(source, target)
            except OSError as exc:
                raise GSAMError(f"{source}: cannot hard-link into {self.out} ({exc.strerror}); "
                                f"use --link symlink or copy") from None
        else:
            shutil.copy2(source, target)
        return size

    def add_image_array(self, split: str, stem: str, array: np.ndarray, source: Path | str) -> None:
        """8-bit arrays become PNG; any other dtype a TIFF of the same dtype (lossless, read by tifffile)."""
        array = np.ascontiguousarray(array)
        if array.dtype == np.uint8:
            Image.fromarray(array).save(self._target(split, "images", stem, ".png", source), format="PNG")
        else:
            import tifffile

            photometric = "rgb" if array.ndim == 3 and array.shape[2] == 3 else "minisblack"
            tifffile.imwrite(self._target(split, "images", stem, ".tif", source), array, photometric=photometric)

    def add_mask(self, split: str, stem: str, mask: np.ndarray, source: Path | str,
                 image_hw: tuple[int, int] | None = None) -> None:
        """A mask of class ids (uint8 PNG); with image_hw, its size must match the image's."""
        if image_hw is not None and tuple(mask.shape[:2]) != tuple(image_hw):
            raise ImportLayoutError(f"{source}: label is {mask.shape[0]}x{mask.shape[1]} but its image is "
                                    f"{image_hw[0]}x{image_hw[1]}")
        Image.fromarray(mask.astype(np.uint8)).save(self._target(split, "masks", stem, ".png", source), format="PNG")

    def finish(self, spec: ClassSpec, provenance: dict) -> dict[str, int]:
        """Write classes.yaml and move the dataset onto OUT. Returns the number of samples per split."""
        if not self.counts.get("train"):
            raise ImportLayoutError(f"{provenance.get('source')}: no training samples found")
        document = {**spec.to_dict(), "imported_from": provenance}
        (self.tmp / "classes.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        if self.out.is_dir():
            self.out.rmdir()  # empty, checked above
        os.replace(self.tmp, self.out)
        return dict(self.counts)


def read_image_any(path: Path) -> np.ndarray:
    """Formats outside PNG/JPEG/TIFF (e.g. BMP) decoded by Pillow as RGB."""
    return read_with_pillow(path, "image", "RGB")


def sorted_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
