"""`gsam serve`: a gsam model repository behind gsam's own gateway, on this machine."""

from __future__ import annotations

from pathlib import Path

import click

from gsam.runtime.serving.capacity import (
    BODY_MIB,
    BODY_TIMEOUT_S,
    BODY_TOTAL_S,
    HEADER_TIMEOUT_S,
    MAX_CONCURRENCY,
    MAX_CONNECTIONS,
    ServeLimits,
)

from .options import retired, triton_models_option

PORT = click.IntRange(1, 65535)
POSITIVE = click.IntRange(min=1)
SECONDS = click.FloatRange(min=0.1)


def _names(ctx, param, values) -> tuple[str, ...]:
    """A repeatable option that also takes comma-separated values."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


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
              help="Write tritonserver's log to this file. Default: no file; its last lines go into error messages. "
                   "A file that fails to write (a full disk) is reported once; lines are dropped until it writes.")
@click.option("--user", default=None,
              help="Started as root: the unprivileged user tritonserver and its python stubs run as (default: the "
                   "account gsam if this machine has one, else nobody). It must be able to read --repo.")
@click.option("--allow-origin", multiple=True, callback=_names, metavar="ORIGIN",
              help="A web origin (https://app.example) whose pages may call the HTTP port; repeatable. Default: "
                   "none (a request with an Origin header gets 403).")
@click.option("--allow-host", multiple=True, callback=_names, metavar="NAME",
              help="A name clients may use in the Host header besides the address gsam serve listens on (a "
                   "Service's DNS name, a proxy's); repeatable; '*' accepts any. Stops DNS rebinding.")
@click.option("--max-connections", type=POSITIVE, default=None,
              help=f"Open connections per public port; past it 503 and closed. [default: {MAX_CONNECTIONS}, less "
                   "when the open-file limit needs it]")
@click.option("--header-timeout", type=SECONDS, default=HEADER_TIMEOUT_S, show_default=True,
              help="Seconds a connection may take to send a whole request head (and may stay idle between requests).")
@click.option("--body-timeout", type=SECONDS, default=BODY_TIMEOUT_S, show_default=True,
              help=f"Seconds a request body may pause; a stalled upload gets 408 and is closed. A whole body gets "
                   f"at most {BODY_TOTAL_S:g} s.")
@click.option("--max-concurrency", type=POSITIVE, default=MAX_CONCURRENCY, show_default=True,
              help="Inference requests in flight (HTTP and gRPC together); past it 503 with Retry-After.")
@click.option("--max-body-mib", type=POSITIVE, default=None,
              help="MiB of request bodies held at once, counted inflated (gzip) and before they are read; past it "
                   f"503 with Retry-After. At least the largest legal request of the served models. [default: "
                   f"{BODY_MIB}, or that request when larger]")
@retired("--timeout", "was renamed --ready-timeout (in predict, --timeout bounds one request)")
@retired("--triton-model", "was renamed --triton-models (a comma-separated list)")
def serve(repo, host, http_port, grpc_port, triton_models, metrics_port, ready_timeout, log_file, user, allow_origin,
          allow_host, max_connections, header_timeout, body_timeout, max_concurrency, max_body_mib) -> None:
    """Serve a model repository on 127.0.0.1 until Ctrl-C or SIGTERM.

    The public HTTP and gRPC ports belong to gsam's gateway; tritonserver (from PATH, e.g. the NGC
    container, else the one bundled in nvidia-pytriton) listens on internal ports behind it. The
    gateway forwards inference, health, metadata, config and statistics only, and checks every
    request against the model's bounds (max_pixels) from its header before reading the tensor, so
    oversized, malformed or compressed-bomb requests are refused with 4xx without reaching the server.
    Triton's model-repository, shared-memory, trace and logging APIs are never reachable: the key the
    gateway forwards with unlocks inference, health and metadata only. Requests from web pages (a
    foreign Origin, or a Host that is not this address) get 403. Started as root, tritonserver runs
    as --user. Connections, request heads, bodies and requests in flight are capped (options below).

    A supervisor sends each model a fixed image every 2 s and compares its answer with the fingerprint
    `gsam triton build` stored: a model that cannot answer (its python process died), is unloaded or
    answers something else is reloaded, a crashed tritonserver restarted; /v2/health/ready answers 503
    until every model answers as recorded. SIGTERM drains requests in flight and exits within 20 s.

    Example: gsam serve --repo triton_models --triton-models gsam_python,gsam_image --metrics-port 8002

    Check it from anywhere: gsam health localhost:8000 --triton-model gsam_python
    """
    from gsam.runtime.serving.model_config import with_compute_models
    from gsam.runtime.serving.service import ServeOptions, serve_repository

    # gsam_image computes through another model (BLS): that one is loaded too, before it
    models = with_compute_models(Path(repo), triton_models)
    limits = ServeLimits(max_connections or MAX_CONNECTIONS, header_timeout, body_timeout, BODY_TOTAL_S,
                         max_concurrency, max_body_mib)
    options = ServeOptions(Path(repo), models, http_port, grpc_port, metrics_port, ready_timeout,
                           Path(log_file) if log_file else None, host=host, limits=limits,
                           explicit_connections=max_connections is not None, user=user, allow_origins=allow_origin,
                           allow_hosts=allow_host)
    serve_repository(options, echo=click.echo)
