"""`gsam health`: does a served model answer a real inference? For probes and load balancers."""

from __future__ import annotations

import click

from ..errors import GSAMError
from .options import triton_model_option


@click.command()
@click.argument("url")
@triton_model_option()
@click.option("--timeout", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="Seconds each of the two requests (the model's config, then the inference) may take.")
def health(url, triton_model, timeout) -> None:
    """Send one model at URL (host:port of a Triton-compatible HTTP endpoint: gsam serve or tritonserver)
    the smallest real inference it takes; exit 0 when it answers with its mask, 1 with one line otherwise.

    Readiness endpoints stay green when a python model's process has died; this check does not. The
    request is built from the model's config: gsam_python gets a min_size x min_size tensor, gsam_image
    a tiny PNG, gsam_onnx and gsam_trt the shape of their first warm-up (inside their first profile).

    Example (a Kubernetes exec probe): gsam health 127.0.0.1:8000 --triton-model gsam_python --timeout 5
    """
    from gsam.runtime.triton.probe import ProbeFailed, fetch_config, probe_for, run_probe

    try:
        probe = probe_for(fetch_config(url, triton_model, timeout))
        seconds = run_probe(url, probe, timeout)
    except ProbeFailed as exc:
        raise GSAMError(f"{triton_model} at {url}: {exc.message}") from None
    click.echo(f"{triton_model} at {url} answered {probe.what} in {seconds * 1000:.0f} ms")
