"""The `gsam` command line: thin wrappers that parse, call library functions and print."""

from __future__ import annotations

import sys
import traceback

import click

from . import __version__
from .errors import GSAMError

PIPELINE = """\b
The pipeline, one command per stage (gsam demo runs them all on generated data):
  gsam data synth  generate a demo dataset (or bring DATA/{train,val}/{images,masks})
  gsam train       fine-tune on random crops, validate on whole images
  gsam eval        per-class IoU and mIoU of a run or any artifact (ONNX, engine, server URL)
  gsam compare     runs or artifacts side by side: per-class IoU, mask agreement, latency, a plot
  gsam predict     masks and overlays through any backend
  gsam export      ONNX with dynamic height/width (verified), TensorRT engines
  gsam triton      write a Triton model repository from the ONNX file
  gsam serve       run Triton on it behind gsam's gateway (HTTP and gRPC, any image size)
  gsam health      does a served model answer a real inference (for probes)
  gsam deploy      run -> verified ONNX variants, profiles, Triton repository, manifest
  gsam bench       latency and throughput of every backend across sizes
  gsam tune        the serving configuration meeting a p99 target on your mix of image sizes
  gsam info        a model's size and FLOPs, or an artifact's lineage
  gsam doctor      this machine's CPU/GPU capabilities and what gsam chooses on it (amp, int8, threads)
  gsam import-reference  turn a checkpoint of the official G-SAM code into a run
"""


class GSAMGroup(click.Group):
    """Turns user-fixable errors into one line on stderr and exit code 1 (--debug shows the traceback)."""

    def invoke(self, ctx: click.Context):
        from .machine import apply_thread_choice

        apply_thread_choice()  # before any command imports torch
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:  # an optional extra not installed: name it (gsam.extras)
            from .extras import missing_extra_message

            message = missing_extra_message(exc, _command_path(exc, ctx.command_path))
            if message is None or (ctx.obj and ctx.obj.get("debug")):
                raise
            click.echo(f"Error: {message}", err=True)
            sys.exit(1)
        except (GSAMError, ValueError, OSError) as exc:  # OSError: unwritable/missing paths, busy devices
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)


def _command_path(exc: BaseException, fallback: str) -> str:
    """The innermost command the exception passed through (`gsam triton k8s`), read off its traceback."""
    path, tb = fallback, exc.__traceback__
    while tb is not None:
        ctx = tb.tb_frame.f_locals.get("ctx")
        if isinstance(ctx, click.Context):
            path = ctx.command_path
        tb = tb.tb_next
    return path


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


def _register_commands() -> None:
    """One module per command group under gsam/commands; each imports its heavy libraries lazily."""
    from .commands.bench import bench
    from .commands.compare import compare
    from .commands.data import data
    from .commands.demo import demo
    from .commands.deploy import deploy
    from .commands.doctor import doctor
    from .commands.evaluate import evaluate
    from .commands.export import export
    from .commands.health import health
    from .commands.info import info
    from .commands.k8s import k8s
    from .commands.predict import predict
    from .commands.reference import import_reference_command
    from .commands.serve import serve
    from .commands.train import train
    from .commands.triton import triton
    from .commands.tune import tune

    for command in (demo, data, train, evaluate, compare, predict, export, triton, serve, health, deploy, bench,
                    tune, info, doctor, import_reference_command):
        cli.add_command(command)
    triton.add_command(k8s)


_register_commands()


def main() -> None:
    cli(prog_name="gsam")


if __name__ == "__main__":
    main()
