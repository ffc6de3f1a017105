"""`gsam train`: its flags are generated from TrainConfig, so defaults live in one place."""

from __future__ import annotations

import dataclasses

import click

from ..device import DEVICE_HELP
from .options import AMP, DEVICE, MODEL, SIZE

# The recipe names, without importing torch for `gsam --help` (a test checks they match RECIPES).
RECIPE_NAMES = ["isbi2012", "camvid", "m-building", "kvasir", "synapse", "cityscapes", "trans10k"]


# Without weights vit_b is a randomly initialized ViT-B: hours per epoch on a CPU, and no SAM to fine-tune.
NO_MODEL = ("say what to train: --sam-checkpoint sam_vit_b_01ec64.pth fine-tunes SAM's ViT-B (the file is at "
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth), --model tiny trains the small "
            "model from scratch (CPU-sized), --model vit_b alone trains a randomly initialized ViT-B")

# Help for each TrainConfig field; the click option's type and default come from the field itself,
# so the defaults live in one place (tests/test_cli_vocabulary.py checks the two stay in step).
TRAIN_FLAG_HELP = {
    "data": "Dataset folder (see `gsam data synth --help`).",
    "out": "Run directory to create.",
    "model": "Registry name: vit_b, vit_l, vit_h or tiny.",
    "sam_checkpoint": "SAM weights to start from, e.g. sam_vit_b_01ec64.pth.",
    "num_classes": "Output channels [default: from the dataset; 1 for binary].",
    "crop": "Random-crop size, e.g. 256 or 256x384 [default: the model's].",
    "epochs": "Training epochs.",
    "batch_size": "Images per optimizer step (per process under torchrun).",
    "lr": "Adam learning rate (cosine decay).",
    "weight_decay": "Adam weight decay.",
    "device": DEVICE_HELP,
    "amp": "Mixed precision (autocast): auto runs bf16 where measured faster on this device, else fp32 (fp16 with "
           "a grad scaler on CUDA without bf16); off, bf16 or fp16 (CUDA only) force a mode.",
    "workers": "DataLoader workers.",
    "seed": "Random seed (data order, crops, initialization).",
    "val_every": "Validate every N epochs.",
    "steps_per_epoch": "Cap optimizer steps per epoch (quick runs).",
    "token_stride": "Pixels per token: 8 is the paper's grid, 16 is SAM's at a quarter of the cost.",
    "cnn": "CNN branch [default: the model's].",
    "cnn_pretrained": "Start the CNN branch from torchvision's ImageNet weights.",
    "accumulate": "Micro-batches per optimizer step: effective batch = batch size x N x processes.",
    "resize": "Resize every image to HxW before cropping and validating (the reference's way) [default: native size].",
    "recipe": "The paper's settings for a dataset (crop, resize, classes, loss); flags override them.",
}
# Choices and types a bare dataclass field cannot express.
TRAIN_FLAG_TYPES = {
    "data": click.Path(file_okay=False), "out": click.Path(file_okay=False), "model": MODEL,
    "sam_checkpoint": click.Path(dir_okay=False), "num_classes": click.IntRange(1), "crop": SIZE,
    "epochs": click.IntRange(1), "batch_size": click.IntRange(1), "device": DEVICE,
    "amp": AMP, "workers": click.IntRange(0), "val_every": click.IntRange(1),
    "steps_per_epoch": click.IntRange(1), "token_stride": click.Choice(["8", "16"]),
    "cnn": click.Choice(["resnet18-w16", "resnet18", "resnet50", "resnet101"]),
    "accumulate": click.IntRange(1), "resize": SIZE, "recipe": click.Choice(RECIPE_NAMES, case_sensitive=False),
}


def _field_option(field: dataclasses.Field):
    flag = "--" + field.name.replace("_", "-")
    default = None if field.default is dataclasses.MISSING else field.default
    if field.type in ("bool", bool):
        return click.option(flag, is_flag=True, default=bool(default), help=TRAIN_FLAG_HELP[field.name])
    kind = TRAIN_FLAG_TYPES.get(field.name, {"float": float, "int": int, "str": str}.get(str(field.type)))
    if field.name == "token_stride":
        default = str(default)
    return click.option(flag, type=kind, default=default, show_default=default is not None,
                        help=TRAIN_FLAG_HELP[field.name])


def _train_options(f):
    """One click option per TrainConfig field, plus the invocation-only flags."""
    from ..train.config import TrainConfig

    options = [_field_option(field) for field in dataclasses.fields(TrainConfig)] + [
        click.option("--config", "config_file", type=click.Path(dir_okay=False),
                     help="YAML file of these settings (underscored names); flags given here override it."),
        click.option("--resume", type=click.Path(file_okay=False), help="Continue this run directory from last.pt."),
        click.option("--stop-after", type=click.IntRange(1), help="End this invocation after epoch N; --resume continues."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
        click.option("--print-config", is_flag=True,
                     help="Print the settings as a --config YAML file (flags and --config merged) and exit."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command()
@_train_options
@click.pass_context
def train(ctx: click.Context, config_file, resume, stop_after, quiet, print_config, **flags) -> None:
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

    from ..errors import GSAMError
    from ..model.run import RunDir
    from ..train.config import TrainConfig, read_yaml_config
    from ..train.trainer import train as run_training

    settings: dict = {}
    if resume:
        run = RunDir(resume)
        if not run.last.is_file():
            raise GSAMError(f"{resume}: nothing to resume (no last.pt)")
        settings.update(run.train_settings())
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
        from ..train.recipes import apply_recipe

        settings = apply_recipe(settings, explicit)
    settings["token_stride"] = int(settings["token_stride"])
    if print_config:
        _print_config(settings)
        return
    for required in ("data", "out"):
        if not settings.get(required):
            raise click.UsageError(f"--{required} is required (or give it in --config / use --resume)")
    if not resume and "model" not in explicit and not settings.get("sam_checkpoint"):
        raise GSAMError(NO_MODEL)
    cfg = TrainConfig.from_dict(settings, source=config_file or "flags")
    path = run_training(cfg, resume=bool(resume), progress=not quiet, stop_after=stop_after)
    click.echo(f"run directory: {path}")


def _print_config(settings: dict) -> None:
    """The merged settings as YAML, in TrainConfig's field order: the one format --config takes."""
    import yaml

    from ..train.config import TrainConfig

    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    values = {name: list(settings[name]) if isinstance(settings.get(name), tuple) else settings.get(name)
              for name in fields}
    click.echo(yaml.safe_dump(values, sort_keys=False), nl=False)
