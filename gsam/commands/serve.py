"""`gsam serve`: a gsam model repository behind gsam's own gateway, on this machine."""

from __future__ import annotations

from pathlib import Path

import click

from .options import retired, triton_models_option

PORT = click.IntRange(1, 65535)


@click.command()
@click.option("--repo", default="triton_models", show_default=True, type=click.Path(file_okay=False),
              help="The repository to serve (written by `gsam triton build`).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface the gateway's ports and the metrics listen on; 0.0.0.0 inside a container or pod "
                   "(behind a NetworkPolicy). tritonserver's own ports stay on 127.0.0.1 whatever this says.")
@click.option("--http-port", type=PORT, default=8000, show_default=True,
              help="Public HTTP port (the gateway's): inference, health, metadata, config, statistics.")
@click.option("--grpc-port", type=PORT, default=8001, show_default=True,
              help="Public gRPC port (the gateway's): the same calls as HTTP.")
@triton_models_option("Models to load, comma-separated. gsam_onnx and gsam_trt need Triton's GPU container.",
                      default="gsam_python,gsam_image")
@click.option("--metrics-port", type=PORT, default=8002, show_default=True,
              help="Port of Triton's Prometheus metrics (http://127.0.0.1:PORT/metrics).")
@click.option("--ready-timeout", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the server and its models to be ready (at start and on each restart).")
@click.option("--log-file", type=click.Path(dir_okay=False), default=None,
              help="Write tritonserver's log to this file. Default: no file; its last lines go into error messages.")
@retired("--timeout", "was renamed --ready-timeout (in predict, --timeout bounds one request)")
@retired("--triton-model", "was renamed --triton-models (a comma-separated list)")
def serve(repo, host, http_port, grpc_port, triton_models, metrics_port, ready_timeout, log_file) -> None:
    """Serve a model repository on 127.0.0.1 until Ctrl-C or SIGTERM.

    The public HTTP and gRPC ports belong to gsam's gateway; tritonserver (from PATH, e.g. the NGC
    container, else the one bundled in nvidia-pytriton) listens on internal ports behind it. The
    gateway forwards inference, health, metadata, config and statistics only, and checks every
    request against the model's bounds (max_pixels) from its header before reading the tensor, so
    oversized, malformed or compressed-bomb requests are refused with 4xx without reaching the server.
    Triton's model-repository, shared-memory, trace and logging APIs are never reachable.

    A supervisor sends each model a real minimal inference every 2 s: a model that cannot answer
    (its python process died) is reloaded, a crashed tritonserver restarted; /v2/health/ready answers
    503 until every model answers. SIGTERM drains requests in flight and exits within 20 s.

    Example: gsam serve --repo triton_models --triton-models gsam_python,gsam_image --metrics-port 8002

    Check it from anywhere: gsam health localhost:8000 --triton-model gsam_python
    """
    from gsam.runtime.triton.model_config import with_compute_models
    from gsam.runtime.triton.service import ServeOptions, serve_repository

    # gsam_image computes through another model (BLS): that one is loaded too, before it
    models = with_compute_models(Path(repo), triton_models)
    options = ServeOptions(Path(repo), models, http_port, grpc_port, metrics_port, ready_timeout,
                           Path(log_file) if log_file else None, host=host)
    serve_repository(options, echo=click.echo)
