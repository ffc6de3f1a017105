"""`gsam eval`: per-class IoU and mIoU of any artifact (run, .pt, .onnx, .plan, Triton URL) at native size."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import device_option, triton_model_option

TAKES = "a run directory, .pt, .onnx, .plan or a Triton URL"


def report_path(model: str, split: str, out_json: str | None) -> Path | None:
    """--out, else RUN/eval_SPLIT.json for a run, FILE.eval_SPLIT.json beside a file, nothing for a URL."""
    from gsam.model.run import resolve_checkpoint
    from gsam.runtime.targets import artifact_kind

    if out_json:
        return Path(out_json)
    kind = artifact_kind(model)
    if kind in ("run directory", "checkpoint"):
        return resolve_checkpoint(model).parent / f"eval_{split}.json"
    if kind == "Triton URL":
        return None
    return Path(model).with_name(f"{Path(model).stem}.eval_{split}.json")


@click.command("eval")
@click.argument("model", type=click.Path())
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
@click.option("--split", default="val", show_default=True, help="train, val or test.")
@device_option()
@triton_model_option()
@click.option("--out", "out_json", type=click.Path(dir_okay=False),
              help="JSON report [default: RUN/eval_SPLIT.json, FILE.eval_SPLIT.json beside a file; none for a URL].")
@click.option("--tile", type=click.IntRange(1), help="Run each image in overlapping TILE x TILE tiles with blended "
              "logits (as gsam predict --tile), for validation images too large for one pass.")
@click.option("--overlap", type=click.IntRange(0), default=128, show_default=True,
              help="Pixels neighbouring tiles share (with --tile); must be smaller than the tile.")
def evaluate(model, data, split, device, triton_model, out_json, tile, overlap) -> None:
    """Per-class IoU, mIoU and pixel accuracy of MODEL on whole images at native size.

    MODEL is anything gsam.load takes: a run directory or .pt (PyTorch, fp32), an .onnx file (fp32,
    fp16 or int8), a TensorRT .plan, or a running server's URL, so the deployed model's own mIoU is
    measured the same way. Images run through the same Predictor as gsam predict.

    \b
    Example: gsam eval runs/demo --data demo_data --split val
    ONNX:    gsam eval model.int8.onnx --data demo_data
    Served:  gsam eval http://localhost:8000/gsam_image --data demo_data
    Tiled:   gsam eval runs/demo --data demo_data --tile 1024 --overlap 128
    """
    from gsam.data.dataset import open_dataset_spec
    from gsam.io import write_text_atomic
    from gsam.runtime.predictor import load
    from gsam.runtime.scoring import iou_table, score

    spec = open_dataset_spec(data)
    target = report_path(model, split, out_json)
    with load(model, device=device, amp="off", triton_model=triton_model, tile=tile, overlap=overlap,
              tile_above=None if tile else 1 << 62, command="gsam eval") as predictor:
        scores, images = score({predictor.name: predictor}, data, split, spec, progress=True)
    result = scores[0]
    for line in iou_table(list(spec.names), scores):
        click.echo(line)
    report = {"model": str(model), "backend": result.name, "data": str(data), "split": split, "images": images,
              **({"tile": tile, "overlap": overlap} if tile else {}), "classes": list(spec.names),
              "iou": result.iou, "miou": result.miou, "pixel_acc": result.pixel_acc}
    if target is not None:
        write_text_atomic(target, json.dumps(report, indent=2))
        click.echo(f"wrote {target}")
