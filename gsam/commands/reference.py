"""`gsam import-reference`: a checkpoint of the official G-SAM code becomes a gsam run."""

from __future__ import annotations

import click

from .options import MODEL, out_option, retired


@click.command("import-reference")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--classes", "num_classes", type=click.IntRange(2), required=True,
              help="The --num_classes the reference was trained with, background included (2 = binary: one logit "
                   "channel).")
@out_option("The run directory to write.", type=click.Path(file_okay=False))
@click.option("--model", "model_name", type=MODEL, default="vit_b", show_default=True,
              help="The reference's --vit_name: vit_b, vit_l or vit_h.")
@click.option("--train-size", type=click.IntRange(32), default=256, show_default=True,
              help="The reference's -encoder_input_size (sizes its global rel-pos tables).")
@click.option("--normalize", type=click.Choice(["reference", "sam"]), default="reference", show_default=True,
              help="reference: its data loader's mean 0.466/0.471/0.380, std 0.195/0.194/0.192 (0-1 scale); "
                   "sam: SAM's constants.")
@click.option("--class-names", help="Comma-separated class names, background first [default: generic names].")
@retired("--num-classes", "was renamed --classes (the reference's class count; --num-classes counts output channels)")
def import_reference_command(checkpoint, num_classes, out, model_name, train_size, normalize, class_names) -> None:
    """Turn a state dict saved by the official G-SAM train.py into a run directory.

    Accepts files saved with or without DataParallel's `module.` prefix. The run
    (config.yaml, best.pt) works with gsam eval, predict and export; the normalization
    the reference's data loader used becomes part of the model. Unknown, missing or
    misshapen keys fail with one line naming the key, and nothing is written.

    Example: gsam import-reference result/model_best.pth --classes 2 --out runs/isbi
    """
    from ..model.reference import import_reference

    names = tuple(n.strip() for n in class_names.split(",")) if class_names else ()
    run = import_reference(checkpoint, num_classes, out, model=model_name, train_size=train_size,
                           normalize=normalize, class_names=names, log=click.echo)
    click.echo(f"wrote {run}/ (config.yaml, best.pt); next: gsam export onnx {run} --out model.onnx")
