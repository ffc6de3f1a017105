"""`gsam deploy`: a run directory -> a deployable folder (a thin wrapper around gsam.deploy)."""

from __future__ import annotations

import click

from .options import out_option


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@out_option("The deploy folder to create (must not exist or be empty).", type=click.Path(file_okay=False),
            required=True)
@click.option("--precision", "precision", default="fp32", show_default=True,
              help="ONNX variants to build and verify, comma-separated: fp32,fp16,int8 (fp32 always).")
@click.option("--profiles", default="auto", show_default=True,
              help="TensorRT profiles: auto (from the dataset's size histogram) or 'min=..,opt=..,max=..;...'.")
@click.option("--bench", is_flag=True, help="Also benchmark the CPU backends on the run's own image sizes.")
def deploy(run, out, precision, profiles, bench) -> None:
    """One command from a run directory to a deployable folder: verified ONNX variants, TensorRT
    profiles and trtexec lines, a Triton repository, and a manifest of every artifact with its
    sha256 and lineage (optionally a short CPU benchmark report).

    Example: gsam deploy runs/demo --out deploy/demo --precision fp32,int8 --bench
    """
    from ..deploy import MANIFEST_NAME, deploy as build, parse_precisions

    manifest = build(run, out, parse_precisions(precision), profiles, bench, log=click.echo)
    click.echo(f"wrote {len(manifest.artifacts)} artifacts to {out} (listed with sha256 in {out}/{MANIFEST_NAME})")
