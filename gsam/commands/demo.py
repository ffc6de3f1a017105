"""`gsam demo`: the whole chain on generated data."""

from __future__ import annotations

from pathlib import Path

import click

from ..demo import DEMO_BATCH, DEMO_CROP, DEMO_DATA, DEMO_EPOCHS
from .options import out_option


@click.command()
@out_option("Folder for everything the demo writes.", default="demo_out", show_default=True, required=False,
            type=click.Path(file_okay=False))
@click.option("--epochs", type=click.IntRange(1), default=DEMO_EPOCHS, show_default=True,
              help=f"Training epochs of the demo's recipe ({DEMO_DATA['train']} images, {DEMO_CROP[0]}x{DEMO_CROP[1]} "
                   f"crops, batch {DEMO_BATCH}, --amp auto). Run again into the same --out, the demo resumes a run of "
                   "the same settings and starts anew otherwise.")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="torchscript", show_default=True,
              help="torchscript keeps the demo within its minutes (gsam export onnx defaults to dynamo, whose "
                   "export alone takes about 90 s on 2 cores); either file is verified at unseen sizes.")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True, help="Timed runs per size.")
def demo(out, epochs, exporter, repeats) -> None:
    """Run the whole chain on generated data: synth, train, eval, export, Triton, requests, latency.

    Takes a few minutes on 2 CPU cores; every stage prints its progress.

    Example: gsam demo --out demo_out
    """
    from ..demo import run_demo

    run_demo(Path(out), epochs, exporter, repeats)
