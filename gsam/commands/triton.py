"""`gsam triton build` and `gsam serve`."""

from __future__ import annotations

import signal
import time

import click

from .options import profile_option


@click.group()
def triton() -> None:
    """Triton Inference Server model repositories generated from the model itself."""


@triton.command("build")
@click.argument("onnx_path", type=click.Path(dir_okay=False))
@click.option("--repo", default="triton_models", show_default=True, type=click.Path(file_okay=False))
@click.option("--engine", type=click.Path(dir_okay=False), help="A TensorRT engine (with its .json sidecar) for gsam_trt.")
@click.option("--version", "model_version", type=click.IntRange(1), default=1, show_default=True)
@click.option("--instances", type=click.IntRange(1), default=1, show_default=True, help="Instances per model (gsam_trt: one group of this many, serving every profile).")
@click.option("--gpu", is_flag=True, help="gsam_python on KIND_GPU with onnxruntime's CUDA provider.")
@profile_option("An engine profile (repeatable): writes gsam_trt's config (before the engine exists, or checked "
                "against --engine's sidecar) and gives gsam_onnx the TensorRT accelerator with the first.")
@click.option("--fp16", is_flag=True, help="FP16 for gsam_onnx's TensorRT accelerator.")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Most pixels one request may hold (N x H x W); larger ones get HTTP 400. "
                   "[default: 4194304 = 2048x2048, or derived from --memory-budget]")
@click.option("--memory-budget", type=click.IntRange(1), default=None, metavar="MIB",
              help="Derive --max-pixels from this budget per request, measuring this model's memory per pixel.")
@click.option("--max-batch", type=click.IntRange(0), default=8, show_default=True,
              help="gsam_python's largest dynamic batch (0 = no batching).")
@click.option("--preferred-batch", "preferred", type=click.IntRange(1), multiple=True,
              help="A batch size the dynamic batcher prefers (repeatable).")
@click.option("--queue-delay-us", type=click.IntRange(0), default=2000, show_default=True,
              help="How long the dynamic batcher waits for more same-shape requests.")
@click.option("--tile", type=click.IntRange(1), help="Run requests above --max-pixels in overlapping TILE x TILE "
              "tiles (memory bounded by the tile) instead of refusing them [default: refuse].")
@click.option("--overlap", type=click.IntRange(0), default=128, show_default=True,
              help="With --tile: pixels neighbouring tiles share.")
@click.option("--max-image-pixels", type=click.IntRange(1), default=100_000_000, show_default=True,
              help="With --tile: the largest image a request may hold.")
def triton_build(onnx_path, repo, engine, model_version, instances, gpu, profiles, fp16, max_pixels, memory_budget,
                 max_batch, preferred, queue_delay_us, tile, overlap, max_image_pixels) -> None:
    """Write or update a model repository: gsam_python, gsam_image, gsam_onnx (and gsam_trt with --engine or --profile).

    gsam_python takes tensors (image FP32 or image_uint8 UINT8, [N, 3, H, W]) and returns
    logits and/or mask, batching same-shape requests; gsam_image takes encoded PNG/JPEG/TIFF
    bytes and returns the mask as PNG. Configs are built as Triton ModelConfig messages and
    carry the model's facts, the request bound and the ONNX file's sha256 as parameters.

    Example: gsam triton build model.onnx --repo triton_models --max-pixels 4194304 --preferred-batch 4

    Example (36-megapixel requests in bounded memory): gsam triton build model.onnx --tile 1024

    \b
    Example (gsam_trt's config now, the engine later from trtexec on the GPU host):
      gsam triton build model.onnx --profile min=1x3x128x128,opt=1x3x512x512,max=1x3x1024x1024
      --profile min=1x3x1024x1024,opt=1x3x1536x1536,max=1x3x2048x2048
    """
    from ..errors import GSAMError
    from ..export.metadata import read_onnx_facts
    from ..export.profiles import parse_profile
    from ..runtime.triton.repository import Batching, Tiling, build_repository

    if max_pixels and memory_budget:
        raise GSAMError("give --max-pixels or --memory-budget, not both")
    if memory_budget:
        from ..runtime.triton.budget import max_pixels_within

        max_pixels = max_pixels_within(onnx_path, memory_budget << 20)
        click.echo(f"--memory-budget {memory_budget} MiB -> --max-pixels {max_pixels}")
    min_size = read_onnx_facts(onnx_path).min_size
    parsed = [parse_profile(p, min_size) for p in profiles] or None
    batching = Batching(max_batch, tuple(preferred), queue_delay_us) if max_batch else None
    for folder in build_repository(onnx_path, repo, engine, model_version, instances, gpu, parsed, fp16,
                                   max_pixels, batching, log=click.echo,
                                   tiling=Tiling(tile or 0, overlap, max_image_pixels)):
        click.echo(f"wrote {folder}/config.pbtxt and {folder}/{model_version}/")


@click.command()
@click.option("--repo", default="triton_models", show_default=True, type=click.Path(file_okay=False))
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--triton-model", "triton_models", multiple=True, default=["gsam_python,gsam_image"], show_default=True,
              help="Model to load; repeat (or comma-separate) for several. gsam_onnx and gsam_trt need Triton's "
                   "GPU container.")
@click.option("--metrics-port", type=int, default=8002, show_default=True,
              help="Port of Triton's Prometheus metrics (http://127.0.0.1:PORT/metrics).")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for readiness.")
def serve(repo, http_port, grpc_port, triton_models, metrics_port, timeout) -> None:
    """Run Triton on a model repository until Ctrl-C, bound to 127.0.0.1.

    Uses `tritonserver` from PATH (e.g. the NGC container), else the one bundled in nvidia-pytriton.

    Example: gsam serve --repo triton_models --triton-model gsam_python,gsam_image --metrics-port 8002
    """
    from ..runtime.triton.server import TritonServer

    models = [m.strip() for value in triton_models for m in value.split(",") if m.strip()]
    server = TritonServer(repo, models, http_port, grpc_port, metrics_port)
    stopping = []

    def request_stop(signum, frame):
        stopping.append(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo(f"starting tritonserver on {repo} (models: {', '.join(models)}); log: {server.log_path}")
        server.start(timeout)
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
