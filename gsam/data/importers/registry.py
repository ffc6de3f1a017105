"""Dataset name -> importer of the official G-SAM layout."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ...errors import GSAMError
from ..dataset import ClassSpec
from .camvid import import_camvid
from .cityscapes import import_cityscapes
from .common import DatasetWriter
from .isbi2012 import import_isbi2012
from .massachusetts import import_m_building
from .npy_folds import import_kvasir, import_synapse
from .trans10k import import_trans10k

Importer = Callable[[Path, DatasetWriter, "int | None"], ClassSpec]

IMPORTERS: dict[str, Importer] = {
    "isbi2012": import_isbi2012,
    "camvid": import_camvid,
    "m-building": import_m_building,
    "kvasir": import_kvasir,
    "synapse": import_synapse,
    "cityscapes": import_cityscapes,
    "trans10k": import_trans10k,
}
FORMATS = ("g-sam",)


def import_dataset(dataset: str, src: str | Path, out: str | Path, *, fmt: str = "g-sam", link: str = "symlink",
                   fold: int | None = None) -> dict[str, int]:
    """Write SRC (in the official loaders' layout of `dataset`) to OUT in gsam's layout with classes.yaml.

    Images are linked (or copied, per `link`) where gsam reads them as they are; labels are decoded
    once into PNG masks of class ids. Returns the number of samples per split.
    """
    if fmt not in FORMATS:
        raise GSAMError(f"--from {fmt!r}: unknown source format; expected one of {', '.join(FORMATS)}")
    key = dataset.lower()
    if key not in IMPORTERS:
        raise GSAMError(f"--dataset {dataset!r}: unknown dataset; expected one of {', '.join(IMPORTERS)}")
    src = Path(src)
    if not src.is_dir():
        raise GSAMError(f"{src}: no such source folder")
    with DatasetWriter(Path(out), link) as writer:
        spec = IMPORTERS[key](src, writer, fold)
        provenance = {"format": fmt, "dataset": key, "source": str(src.resolve())}
        if fold is not None or key in ("isbi2012", "kvasir", "synapse"):
            provenance["fold"] = fold if fold is not None else (0 if key == "isbi2012" else 1)
        return writer.finish(spec, provenance)
