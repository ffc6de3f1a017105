"""`gsam data ...`: dataset tools."""

from __future__ import annotations

import click

from .options import out_option, retired


@click.group()
def data() -> None:
    """Dataset tools: generate the demo dataset, check a dataset folder, import the paper's datasets."""


@data.command()
@out_option("Dataset folder to write.", type=click.Path(file_okay=False))
@click.option("--classes", "num_classes", type=click.IntRange(2, 8), default=3, show_default=True,
              help="Number of classes, background included (2 writes binary 0/255 masks).")
@click.option("--train", "train_count", type=click.IntRange(1), default=24, show_default=True, help="Training images.")
@click.option("--val", "val_count", type=click.IntRange(0), default=8, show_default=True, help="Validation images.")
@click.option("--test", "test_count", type=click.IntRange(0), default=0, show_default=True, help="Test images.")
@click.option("--min-side", "min_size", type=int, default=64, show_default=True,
              help="Smallest image side in pixels.")
@click.option("--max-side", "max_size", type=int, default=160, show_default=True,
              help="Largest image side in pixels.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@retired("--num-classes", "was renamed --classes (--num-classes counts a model's output channels)")
@retired("--min-size", "was renamed --min-side (--min-size is a model's minimum side)")
@retired("--max-size", "was renamed --max-side")
def synth(out, num_classes, train_count, val_count, test_count, min_size, max_size, seed) -> None:
    """Write a synthetic dataset to --out: textured shapes on textured backgrounds.

    Images have random non-square sizes; each class has its own shape and texture.
    The layout is the one `gsam train` reads: OUT/{train,val}/{images,masks}, OUT/classes.yaml.

    Example: gsam data synth --out demo_data --classes 3
    """
    from ..data.synth import write_synthetic_dataset

    spec = write_synthetic_dataset(out, num_classes, train=train_count, val=val_count, test=test_count,
                                   min_size=min_size, max_size=max_size, seed=seed)
    click.echo(f"wrote {train_count} train, {val_count} val, {test_count} test images to {out} "
               f"(classes: {', '.join(spec.names)})")


@data.command()
@click.argument("root", type=click.Path(file_okay=False))
def check(root) -> None:
    """Check a dataset folder: pairs, sizes, class ids, readable files, non-empty splits."""
    from pathlib import Path

    from ..data.dataset import SegmentationDataset, open_dataset_spec

    spec = open_dataset_spec(root)
    for split in ("train", "val", "test"):
        if (Path(root) / split).is_dir():
            dataset = SegmentationDataset.open(root, split, spec, progress=True)
            click.echo(f"{split}: {len(dataset)} images ok")
    click.echo(f"classes ({spec.num_classes}): {', '.join(spec.names)}; ignore index {spec.ignore_index}")


# `gsam data import`: datasets in the layouts of other code bases.
IMPORT_FORMATS = ["g-sam"]
IMPORT_DATASETS = ["isbi2012", "camvid", "m-building", "kvasir", "synapse", "cityscapes", "trans10k"]


@data.command("import")
@click.argument("src", type=click.Path(file_okay=False))
@click.option("--from", "fmt", type=click.Choice(IMPORT_FORMATS), required=True,
              help="Layout of SRC: g-sam = the folders and files the official G-SAM loaders read.")
@click.option("--dataset", type=click.Choice(IMPORT_DATASETS, case_sensitive=False), required=True,
              help="Which of the paper's datasets SRC holds.")
@out_option("New dataset folder to write.", type=click.Path(file_okay=False))
@click.option("--fold", type=click.IntRange(0),
              help="Cross-validation fold: ISBI2012 0..2 [default 0], Kvasir/Synapse arrays' k [default 1].")
@click.option("--link", type=click.Choice(["symlink", "hardlink", "copy"]), default="symlink", show_default=True,
              help="How images gsam reads as they are reach OUT (labels are always converted).")
def import_(src, fmt, dataset, out, fold, link) -> None:
    """Import SRC, kept in the layout the official G-SAM code reads, into gsam's layout at OUT.

    Writes OUT/{train,val[,test]}/{images,masks} and OUT/classes.yaml (names, ignore index,
    palette). Images are linked where gsam reads the format as it is; labels are decoded once into
    PNG masks of class ids (Cityscapes labelIds to its 19 training classes, 255 ignored).
    Then train with the paper's settings: gsam train --recipe DATASET --data OUT ...

    Example: gsam data import --from g-sam --dataset isbi2012 Dataset/ISBI2012 --out data/isbi2012
    """
    from ..data.importers import import_dataset

    counts = import_dataset(dataset, src, out, fmt=fmt, link=link, fold=fold)
    click.echo(f"wrote {out}: " + ", ".join(f"{split} {n}" for split, n in counts.items()) + " samples")
