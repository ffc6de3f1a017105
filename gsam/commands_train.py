"""`gsam train`, `gsam eval`, `gsam predict`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_types import SIZE

# The recipe names, without importing torch for `gsam --help`.
RECIPE_NAMES = ["isbi2012", "camvid", "m-building", "kvasir", "synapse", "cityscapes", "trans10k"]


def _train_options(f):
    options = [
        click.option("--data", type=click.Path(file_okay=False), help="Dataset folder (see `gsam data synth --help`)."),
        click.option("--out", type=click.Path(file_okay=False), help="Run directory to create."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False),
                     help="YAML file of these settings (underscored names); flags given here override it."),
        click.option("--model", default="vit_b", show_default=True, help="vit_b, vit_l, vit_h or tiny."),
        click.option("--sam-checkpoint", type=click.Path(dir_okay=False),
                     help="SAM weights to start from, e.g. sam_vit_b_01ec64.pth."),
        click.option("--num-classes", type=click.IntRange(1), help="Output channels [default: from the dataset; 1 for binary]."),
        click.option("--crop", type=SIZE, help="Random-crop size, e.g. 256 or 256x384 [default: the model's]."),
        click.option("--epochs", type=click.IntRange(1), default=200, show_default=True),
        click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True),
        click.option("--lr", type=float, default=1e-4, show_default=True, help="Adam learning rate (cosine decay)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--amp", type=click.Choice(["off", "bf16", "fp16"]), default="off", show_default=True,
                     help="Mixed precision on CUDA (fp16 uses a grad scaler)."),
        click.option("--workers", type=click.IntRange(0), default=2, show_default=True, help="DataLoader workers."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--val-every", type=click.IntRange(1), default=1, show_default=True, help="Validate every N epochs."),
        click.option("--steps-per-epoch", type=click.IntRange(1), help="Cap optimizer steps per epoch (quick runs)."),
        click.option("--token-stride", type=click.Choice(["8", "16"]), default="8", show_default=True),
        click.option("--cnn", type=click.Choice(["resnet18", "resnet50", "resnet101"]),
                     help="CNN branch [default: the model's]."),
        click.option("--cnn-pretrained", is_flag=True, help="Start the CNN branch from torchvision's ImageNet weights."),
        # Paper setup: per-dataset presets, resize-then-crop, gradient accumulation.
        click.option("--recipe", type=click.Choice(RECIPE_NAMES, case_sensitive=False),
                     help="The paper's settings for a dataset (crop, resize, classes, loss); flags override them."),
        click.option("--resize", type=SIZE, help="Resize every image to HxW before cropping and validating "
                     "(the reference's way) [default: native size]."),
        click.option("--accumulate", type=click.IntRange(1), default=1, show_default=True,
                     help="Micro-batches per optimizer step: effective batch = batch size x N x processes."),
        click.option("--resume", type=click.Path(file_okay=False), help="Continue this run directory from last.pt."),
        click.option("--stop-after", type=click.IntRange(1), help="End this invocation after epoch N; --resume continues."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command()
@_train_options
@click.pass_context
def train(ctx: click.Context, config_file, resume, stop_after, quiet, **flags) -> None:
    """Fine-tune GSAM: random crops for training, whole images at native size for validation.

    Writes a run directory: config.yaml, last.pt every epoch, best.pt on a new best mIoU,
    metrics.jsonl and curves.png. Several GPUs or machines: launch with torchrun, e.g.
    `torchrun --nproc-per-node 4 -m gsam train ...`.

    Example: gsam train --data demo --out runs/demo --model tiny --epochs 10 --lr 2e-3

    \b
    The paper's setup for a dataset imported with `gsam data import --from g-sam`:
      gsam train --recipe isbi2012 --data data/isbi --out runs/isbi --sam-checkpoint sam_vit_b_01ec64.pth
    The paper's batch of 8 on a small GPU: --batch-size 2 --accumulate 4.
    The reference's resize without a recipe: --resize 360x480 --crop 256.
    """
    from click.core import ParameterSource

    from .errors import GSAMError
    from .train.config import TrainConfig, read_yaml_config
    from .train.run_dir import RunDir
    from .train.trainer import train as run_training

    settings: dict = {}
    if resume:
        import yaml

        run = RunDir(resume)
        if not run.last.is_file():
            raise GSAMError(f"{resume}: nothing to resume (no last.pt)")
        settings.update(yaml.safe_load(run.config.read_text())["train"])
        settings["out"] = resume
    explicit: set[str] = set()
    if config_file:
        from_file = read_yaml_config(config_file)
        settings.update(from_file)
        explicit.update(from_file)
    for name, value in flags.items():
        given = ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)
        if given or name not in settings:
            settings[name] = value
        if given:
            explicit.add(name)
    if "recipe" in explicit:  # a resumed run's config.yaml already holds its recipe's values
        from .train.recipes import apply_recipe

        settings = apply_recipe(settings, explicit)
    settings["token_stride"] = int(settings["token_stride"])
    for required in ("data", "out"):
        if not settings.get(required):
            raise click.UsageError(f"--{required} is required (or give it in --config / use --resume)")
    cfg = TrainConfig.from_dict(settings, source=config_file or "flags")
    path = run_training(cfg, resume=bool(resume), progress=not quiet, stop_after=stop_after)
    click.echo(f"run directory: {path}")


@click.command("eval")
@click.argument("run", type=click.Path())
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
@click.option("--split", default="val", show_default=True, help="train, val or test.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", "out_json", type=click.Path(dir_okay=False), help="JSON report [default: RUN/eval_SPLIT.json].")
def evaluate(run, data, split, device, out_json) -> None:
    """Per-class IoU, mIoU and pixel accuracy of a run on whole images at native size."""
    from .data.dataset import SegmentationDataset, open_dataset_spec
    from .errors import GSAMError
    from .io import write_text_atomic
    from .model.checkpoint import load_gsam_checkpoint
    from .train.engine import evaluate as run_eval
    from .train.run_dir import resolve_checkpoint
    from .train.trainer import resolve_device

    checkpoint = resolve_checkpoint(run)
    model, _ = load_gsam_checkpoint(checkpoint)
    spec = open_dataset_spec(data)
    expected = {1, 2} if spec.binary else {spec.num_classes}
    if model.config.num_classes not in expected:
        raise GSAMError(f"{checkpoint}: model has {model.config.num_classes} output channels but {data} has "
                        f"{spec.num_classes} classes")
    dev = resolve_device(device)
    dataset = SegmentationDataset.open(data, split, spec, progress=True)
    result = run_eval(model.to(dev), dataset, spec.num_classes, dev, progress=True)
    width = max(len(n) for n in spec.names)
    click.echo(f"{'class':<{width}}  IoU")
    for name, iou in zip(spec.names, result["iou"]):
        click.echo(f"{name:<{width}}  {'n/a' if iou is None else f'{iou:.4f}'}")
    click.echo(f"{'mIoU':<{width}}  {result['miou']:.4f}\n{'pixel acc':<{width}}  {result['pixel_acc']:.4f}")
    report = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "images": len(dataset),
              "classes": list(spec.names), **result}
    target = Path(out_json) if out_json else (Path(run) if Path(run).is_dir() else Path(run).parent) / f"eval_{split}.json"
    write_text_atomic(target, json.dumps(report, indent=2))
    click.echo(f"wrote {target}")
