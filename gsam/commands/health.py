"""`gsam health`: does a served model answer a real inference, with its own answer? For probes and load balancers."""

from __future__ import annotations

import click

from ..errors import GSAMError
from .options import triton_model_option


@click.command()
@click.argument("url")
@triton_model_option()
@click.option("--timeout", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="Seconds each of the two requests (the model's config, then the inference) may take.")
@click.option("--repo", type=click.Path(file_okay=False), default=None,
              help="The repository the server serves: the expected answer is read from its config on disk, not "
                   "from the server's (which an impostor model would choose).")
def health(url, triton_model, timeout, repo) -> None:
    """Send one model at URL (host:port of a Triton-compatible HTTP endpoint: gsam serve or tritonserver)
    the smallest real inference it takes; exit 0 when it answers with its mask and that mask (and its
    logits) match the fingerprint `gsam triton build` stored, 1 with one line otherwise.

    Readiness endpoints stay green when a python model's process has died, or when another model was
    loaded under its name; this check does not. The request is built from the model's config: gsam_python
    and gsam_image get a fixed min_size x min_size image, gsam_onnx and gsam_trt the shape of their first
    warm-up (inside their first profile). Without --repo the fingerprint comes from the served config.

    Example (a Kubernetes exec probe): gsam health 127.0.0.1:8000 --triton-model gsam_python --repo /models
    """
    from gsam.runtime.serving.probe import ProbeFailed, config_fingerprint, fetch_config, probe_for, run_probe

    try:
        fingerprint = None
        if repo is not None:
            from pathlib import Path

            from google.protobuf import json_format

            from gsam.runtime.serving.model_config import read_model_config

            on_disk = json_format.MessageToDict(read_model_config(Path(repo) / triton_model),
                                                preserving_proto_field_name=True)
            fingerprint = config_fingerprint(on_disk)
        probe = probe_for(fetch_config(url, triton_model, timeout), fingerprint)
        seconds = run_probe(url, probe, timeout)
    except ProbeFailed as exc:
        raise GSAMError(f"{triton_model} at {url}: {exc.message}") from None
    checked = "as its fingerprint says" if probe.fingerprint else "(no fingerprint in its config: answer not compared)"
    click.echo(f"{triton_model} at {url} answered {probe.what} in {seconds * 1000:.0f} ms, {checked}")
