"""`gsam compare`: two or more runs or artifacts on the same images, side by side, with a plot."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import device_option, out_option, triton_model_option


def column_names(models: tuple[str, ...]) -> list[str]:
    """Short, distinct column names: each model's own name (a run's folder, a file's name, a URL as given)."""
    names: list[str] = []
    for model in models:
        name = Path(model.rstrip("/")).name if "://" not in model else model.split("://", 1)[1]
        while name in names:
            name += "'"
        names.append(name)
    return names


@click.command("compare")
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
@click.option("--split", default="val", show_default=True, help="train, val or test.")
@out_option("Writes OUT/compare.json and OUT/compare.png.", type=click.Path(file_okay=False))
@device_option()
@triton_model_option()
@click.option("--latency", is_flag=True, help="Also time each model per image (median ms, first image left out).")
def compare(models, data, split, out, device, triton_model, latency) -> None:
    """Per-class IoU of two or more MODELS side by side, how often their masks agree with the first one's,
    and (with --latency) their median time per image; a bar chart of the per-class IoU.

    Each model is anything gsam.load takes (run directory, .pt, .onnx, .plan, Triton URL); every image of
    the split goes through every model, whole, at native size.

    \b
    Example:  gsam compare runs/a runs/b --data DATA --out cmp
    Variants: gsam compare model.onnx model.fp16.onnx model.int8.onnx --data DATA --out cmp --latency
    """
    from gsam.data.dataset import open_dataset_spec
    from gsam.errors import GSAMError
    from gsam.io import write_text_atomic
    from gsam.runtime.predictor import load
    from gsam.runtime.scoring import iou_table, score

    if len(models) < 2:
        raise GSAMError("gsam compare needs two or more runs or artifacts; `gsam eval MODEL --data DATA` scores one")
    spec = open_dataset_spec(data)
    names = column_names(models)
    predictors = {}
    try:
        for name, model in zip(names, models):
            predictors[name] = load(model, device=device, amp="off", triton_model=triton_model,
                                    tile_above=1 << 62, command="gsam compare")
        scores, images = score(predictors, data, split, spec, latency=latency, progress=True)
    finally:
        for predictor in predictors.values():
            predictor.close()
    for line in iou_table(list(spec.names), scores):
        click.echo(line)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"data": str(data), "split": split, "images": images, "classes": list(spec.names),
              "models": [{"model": str(model), **s.to_dict()} for model, s in zip(models, scores)]}
    write_text_atomic(out / "compare.json", json.dumps(report, indent=2))
    plot_scores(list(spec.names), scores, out / "compare.png")
    click.echo(f"wrote {out / 'compare.json'} and {out / 'compare.png'}")


def plot_scores(classes: list[str], scores, path: Path) -> None:
    """Grouped bars: per-class IoU of every model, mIoU last."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from gsam.io import atomic_path

    labels = [*classes, "mIoU"]
    width = 0.8 / len(scores)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) * len(scores) ** 0.5), 4))
    for index, s in enumerate(scores):
        values = [np.nan if v is None else v for v in s.iou] + [s.miou]
        axes.bar(np.arange(len(labels)) + (index - (len(scores) - 1) / 2) * width, values, width, label=s.name)
    axes.set_xticks(np.arange(len(labels)), labels, rotation=30 if len(labels) > 6 else 0)
    axes.set_ylim(0, 1)
    axes.set_ylabel("IoU")
    axes.legend(fontsize="small")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
