"""`gsam info`: a model's architecture at a size, or where an artifact came from."""

from __future__ import annotations

from pathlib import Path

import click

from .options import MODEL, SIZE


def _architecture_rows(model_name: str, size, token_stride: int, num_classes: int) -> list[tuple[str, str]]:
    from ..model import build_gsam

    model = build_gsam(model_name, token_stride=token_stride, num_classes=num_classes).eval()
    return _cost_rows(model, size, parameters=True)


def _cost_rows(model, size, parameters: bool) -> list[tuple[str, str]]:
    from ..model.flops import count_flops
    from ..model.trainable import count_parameters

    config = model.config
    h, w = size
    if min(h, w) < config.min_size:
        raise ValueError(f"--size {h}x{w} is below the model's minimum of {config.min_size} pixels per side")
    flops = count_flops(model, h, w)
    grid = config.token_grid(h, w)
    rows = [("model", f"{config.name} (embed dim {config.embed_dim}, {config.depth} blocks, CNN {config.cnn})")]
    if parameters:
        total, trainable = count_parameters(model)
        rows.append(("parameters", f"{total / 1e6:.2f} M total, {trainable / 1e6:.2f} M trainable"))
    rows += [
        ("input", f"{h}x{w} (minimum {config.min_size}x{config.min_size})"),
        ("token grid", f"{grid[0]}x{grid[1]} = {grid[0] * grid[1]} tokens (stride {config.token_stride})"),
        ("forward", f"{flops.total / 1e9:.2f} GFLOPs ({flops.module('GSAM.image_encoder') / 1e9:.2f} in the encoder)"),
    ]
    return rows


@click.command()
@click.argument("target", required=False)
@click.option("--model", "model_option", type=MODEL, help="Same as TARGET: a registry name or an artifact path.")
@click.option("--size", type=SIZE, help="Input size HEIGHTxWIDTH for the token grid and FLOPs [default: 512x512 "
              "for a registry name].")
@click.option("--token-stride", type=click.Choice(["8", "16"]), default="8", show_default=True,
              help="Registry models: pixels per token (8 is the paper's grid, 16 is SAM's at a quarter of the cost).")
@click.option("--num-classes", type=click.IntRange(1), default=1, show_default=True,
              help="Registry models: output channels (1 = binary).")
def info(target, model_option, size, token_stride, num_classes) -> None:
    """Describe a model (TARGET is a registry name) or an artifact and its lineage.

    \b
    A registry name (vit_b, vit_l, vit_h, tiny): parameters, token grid and FLOPs at --size.
    An artifact (run directory, .pt, .onnx, .plan, Triton model or repository folder): its
    model facts and the chain it came from (ONNX file and sha256, checkpoint, epoch, mIoU).

    \b
    Examples:
      gsam info vit_b --size 512x768
      gsam info demo_out/triton_models/gsam_python
    """
    from ..model.config import model_names

    name = target or model_option or "vit_b"
    if name in model_names() or not Path(name).exists() and not Path(name).suffix:
        for key, value in _architecture_rows(name, size or (512, 512), int(token_stride), num_classes):
            click.echo(f"{key:<12} {value}")
        return
    from ..lineage import describe

    descriptions = describe(name)
    for index, description in enumerate(descriptions):
        if index:
            click.echo("")
        for line in description.lines():
            click.echo(line)
    if size:
        from ..model import build_gsam

        click.echo("")
        for key, value in _cost_rows(build_gsam(descriptions[0].facts.config).eval(), size, parameters=False):
            click.echo(f"{key:<14} {value}")
