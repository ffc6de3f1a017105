"""The `gsam` command line: thin wrappers that parse, call library functions and print."""

from __future__ import annotations

import sys
import traceback

import click

from . import __version__
from .cli_types import SIZE
from .errors import GSAMError

PIPELINE = """\b
The pipeline, one command per stage (gsam demo runs them all on generated data):
  gsam data synth  generate a demo dataset (or bring DATA/{train,val}/{images,masks})
  gsam train       fine-tune on random crops, validate on whole images
  gsam eval        per-class IoU and mIoU of a run
  gsam predict     masks and overlays through any backend
  gsam export      ONNX with dynamic height/width (verified), TensorRT engines
  gsam triton      write a Triton model repository from the ONNX file
  gsam serve       run Triton on it (HTTP and gRPC, any image size)
  gsam bench       latency and throughput of every backend across sizes
  gsam info        parameters, token grid and FLOPs of a model at a size
"""


class GSAMGroup(click.Group):
    """Turns user-fixable errors into one line on stderr and exit code 1 (--debug shows the traceback)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (GSAMError, ValueError, OSError) as exc:  # OSError: unwritable/missing paths, busy devices
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=GSAMGroup, epilog=PIPELINE, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gsam")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Fine-tune Generalized SAM (GSAM) on your segmentation data and serve it at any image size.

    Images keep their native size and aspect ratio from training to serving: one ONNX
    file with dynamic height and width feeds onnxruntime, TensorRT and Triton.
    """
    ctx.ensure_object(dict)["debug"] = debug


@cli.command()
@click.option("--model", "model_name", default="vit_b", show_default=True, help="Registry name: vit_b, vit_l, vit_h or tiny.")
@click.option("--size", type=SIZE, default="512x512", show_default=True, help="Input size HEIGHTxWIDTH.")
@click.option("--token-stride", type=click.Choice(["8", "16"]), default="8", show_default=True,
              help="Pixels per token: 8 is the paper's grid, 16 is SAM's at a quarter of the cost.")
@click.option("--num-classes", type=int, default=1, show_default=True, help="Output channels (1 = binary).")
def info(model_name: str, size: tuple[int, int], token_stride: str, num_classes: int) -> None:
    """Parameters, token grid and forward FLOPs of a model at one input size.

    Example: gsam info --model vit_b --size 512x768
    """
    from .model import build_gsam, count_parameters
    from .model.flops import count_flops

    model = build_gsam(model_name, token_stride=int(token_stride), num_classes=num_classes).eval()
    config = model.config
    h, w = size
    if min(h, w) < config.min_size:
        raise ValueError(f"--size {h}x{w} is below the model's minimum of {config.min_size} pixels per side")
    total, trainable = count_parameters(model)
    flops = count_flops(model, h, w)
    grid = config.token_grid(h, w)
    rows = [
        ("model", f"{config.name} (embed dim {config.embed_dim}, {config.depth} blocks, CNN {config.cnn})"),
        ("parameters", f"{total / 1e6:.2f} M total, {trainable / 1e6:.2f} M trainable"),
        ("input", f"{h}x{w} (minimum {config.min_size}x{config.min_size})"),
        ("token grid", f"{grid[0]}x{grid[1]} = {grid[0] * grid[1]} tokens (stride {config.token_stride})"),
        ("forward", f"{flops.total / 1e9:.2f} GFLOPs ({flops.module('GSAM.image_encoder') / 1e9:.2f} in the encoder)"),
    ]
    for key, value in rows:
        click.echo(f"{key:<12} {value}")


def _register_commands() -> None:
    from .commands_bench import bench
    from .commands_data import data
    from .commands_export import export
    from .commands_predict import predict
    from .commands_reference import import_reference_command
    from .commands_serve import serve, triton
    from .commands_train import evaluate, train
    from .demo import demo

    for command in (demo, data, train, evaluate, predict, export, triton, serve, bench, import_reference_command):
        cli.add_command(command)


_register_commands()


def main() -> None:
    cli(prog_name="gsam")


if __name__ == "__main__":
    main()
