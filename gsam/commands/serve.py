"""`gsam serve`: Triton on a model repository, on this machine."""

from __future__ import annotations

import signal
import time

import click

from .options import retired, triton_models_option


@click.command()
@click.option("--repo", default="triton_models", show_default=True, type=click.Path(file_okay=False),
              help="The repository to serve (written by `gsam triton build`).")
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@triton_models_option("Models to load, comma-separated. gsam_onnx and gsam_trt need Triton's GPU container.",
                      default="gsam_python,gsam_image")
@click.option("--metrics-port", type=int, default=8002, show_default=True,
              help="Port of Triton's Prometheus metrics (http://127.0.0.1:PORT/metrics).")
@click.option("--ready-timeout", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the server and its models to be ready.")
@retired("--timeout", "was renamed --ready-timeout (in predict, --timeout bounds one request)")
@retired("--triton-model", "was renamed --triton-models (a comma-separated list)")
def serve(repo, http_port, grpc_port, triton_models, metrics_port, ready_timeout) -> None:
    """Run Triton on a model repository until Ctrl-C, bound to 127.0.0.1.

    Uses `tritonserver` from PATH (e.g. the NGC container), else the one bundled in nvidia-pytriton.

    Example: gsam serve --repo triton_models --triton-models gsam_python,gsam_image --metrics-port 8002
    """
    from gsam.runtime.triton.server import TritonServer

    server = TritonServer(repo, triton_models, http_port, grpc_port, metrics_port=metrics_port)
    stopping = []

    def request_stop(signum, frame):
        stopping.append(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo(f"starting tritonserver on {repo} (models: {', '.join(triton_models)}); log: {server.log_path}")
        server.start(ready_timeout)
        click.echo(f"ready: HTTP http://{server.http_url}  gRPC {server.grpc_url}  metrics {server.metrics_url}  "
                   "(Ctrl-C stops)")
        while not stopping and server.process.poll() is None:
            time.sleep(0.2)
        if not stopping:
            raise click.ClickException(f"tritonserver exited: {server.failure_reason()}")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("tritonserver stopped")
