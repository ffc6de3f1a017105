"""`gsam demo`: the whole chain on generated data."""

from __future__ import annotations

from pathlib import Path

import click

from .options import out_option


@click.command()
@out_option("Folder for everything the demo writes.", default="demo_out", show_default=True, required=False,
            type=click.Path(file_okay=False))
@click.option("--epochs", type=click.IntRange(1), default=40, show_default=True,
              help="Training epochs (the demo's recipe: 48 images, 96x96 crops, bf16 on the CPU).")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="dynamo", show_default=True)
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True, help="Timed runs per size.")
def demo(out, epochs, exporter, repeats) -> None:
    """Run the whole chain on generated data: synth, train, eval, export, Triton, requests, latency.

    Takes a few minutes on 2 CPU cores; every stage prints its progress.

    Example: gsam demo --out demo_out
    """
    from ..demo import run_demo

    run_demo(Path(out), epochs, exporter, repeats)
