"""`gsam eval`: per-class IoU and mIoU of a trained model on whole images at native size."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import device_option


@click.command("eval")
@click.argument("model", type=click.Path())
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
@click.option("--split", default="val", show_default=True, help="train, val or test.")
@device_option()
@click.option("--out", "out_json", type=click.Path(dir_okay=False), help="JSON report [default: RUN/eval_SPLIT.json].")
@click.option("--tile", type=click.IntRange(1), help="Run each image in overlapping TILE x TILE tiles with blended "
              "logits (as gsam predict --tile), for validation images too large for one pass.")
@click.option("--overlap", type=click.IntRange(0), default=128, show_default=True,
              help="Pixels neighbouring tiles share (with --tile); must be smaller than the tile.")
def evaluate(model, data, split, device, out_json, tile, overlap) -> None:
    """Per-class IoU, mIoU and pixel accuracy of MODEL (a run or .pt) on whole images at native size.

    \b
    Example: gsam eval runs/demo --data demo_data --split val
    Tiled:   gsam eval runs/demo --data demo_data --tile 1024 --overlap 128
    """
    from ..data.dataset import SegmentationDataset, open_dataset_spec
    from ..device import resolve_device
    from ..errors import GSAMError
    from ..io import write_text_atomic
    from ..model.run import load_trained, resolve_checkpoint
    from ..train.engine import evaluate as run_eval

    checkpoint = resolve_checkpoint(model)
    net, _ = load_trained(checkpoint)
    spec = open_dataset_spec(data)
    expected = {1, 2} if spec.binary else {spec.num_classes}
    if net.config.num_classes not in expected:
        raise GSAMError(f"{checkpoint}: model has {net.config.num_classes} output channels but {data} has "
                        f"{spec.num_classes} classes")
    if tile:
        from ..pixels.tiling import Tiles

        try:
            Tiles(tile, overlap, net.config.min_size)
        except ValueError as exc:
            raise GSAMError(f"--tile {tile} --overlap {overlap}: {exc}") from None
    dev = resolve_device(device)
    dataset = SegmentationDataset.open(data, split, spec, progress=True)
    result = run_eval(net.to(dev), dataset, spec.num_classes, dev, progress=True, tile=tile, overlap=overlap)
    width = max(len(n) for n in spec.names)
    click.echo(f"{'class':<{width}}  IoU")
    for name, iou in zip(spec.names, result["iou"]):
        click.echo(f"{name:<{width}}  {'n/a' if iou is None else f'{iou:.4f}'}")
    click.echo(f"{'mIoU':<{width}}  {result['miou']:.4f}\n{'pixel acc':<{width}}  {result['pixel_acc']:.4f}")
    report = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "images": len(dataset),
              **({"tile": tile, "overlap": overlap} if tile else {}),
              "classes": list(spec.names), **result}
    target = Path(out_json) if out_json else checkpoint.parent / f"eval_{split}.json"
    write_text_atomic(target, json.dumps(report, indent=2))
    click.echo(f"wrote {target}")
