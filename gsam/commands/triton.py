"""`gsam triton build`: a Triton model repository written from the model itself (`gsam triton k8s` too)."""

from __future__ import annotations

import click

from gsam.deploy.triton.compute_target import COMPUTE_MODELS

from .options import precision_option, profile_option, retired


@click.group()
def triton() -> None:
    """Triton Inference Server model repositories generated from the model itself."""


@triton.command("build")
@click.argument("onnx_path", type=click.Path(dir_okay=False))
@click.option("--repo", default="triton_models", show_default=True, type=click.Path(file_okay=False),
              help="The repository folder to write or update.")
@click.option("--engine", type=click.Path(dir_okay=False), help="A TensorRT engine (with its .json sidecar) for gsam_trt.")
@click.option("--model-version", type=click.IntRange(1), default=1, show_default=True,
              help="The version folder the models are written to (N/ in each model).")
@click.option("--instances", type=click.IntRange(1), default=1, show_default=True,
              help="Instances per model (gsam_trt: one group of this many, serving every profile).")
@click.option("--gpu", is_flag=True, help="gsam_python on KIND_GPU with onnxruntime's CUDA provider.")
@profile_option("An engine profile (repeatable): writes gsam_trt's config (before the engine exists, or checked "
                "against --engine's sidecar) and gives gsam_onnx the TensorRT accelerator with the first.")
@precision_option("The precision gsam_onnx's TensorRT accelerator builds in: fp32 or fp16 (an int8 ONNX serves "
                  "as it is; int8 here is refused).")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Most pixels one request may hold (N x H x W); larger ones get HTTP 400. "
                   "[default: 4194304 = 2048x2048, or derived from --memory-budget]")
@click.option("--memory-budget", type=click.IntRange(1), default=None, metavar="MIB",
              help="Derive --max-pixels from this budget per request, measuring this model's memory per pixel.")
@click.option("--max-batch", type=click.IntRange(1), default=8, show_default=True,
              help="gsam_python's largest dynamic batch of same-shape requests (1 = no batching: each request "
                   "runs as sent).")
@click.option("--preferred-batch", "preferred", type=click.IntRange(1), multiple=True,
              help="A batch size the dynamic batcher prefers (repeatable).")
@click.option("--queue-delay-us", type=click.IntRange(0), default=2000, show_default=True,
              help="How long the dynamic batcher waits for more same-shape requests.")
@click.option("--oversize-tile", type=click.IntRange(1), help="Run requests above --max-pixels in overlapping "
              "TILE x TILE tiles (memory bounded by the tile) instead of refusing them [default: refuse].")
@click.option("--overlap", type=click.IntRange(0), default=128, show_default=True,
              help="With --oversize-tile: pixels neighbouring tiles share.")
@click.option("--max-tiled-pixels", type=click.IntRange(1), default=100_000_000, show_default=True,
              help="With --oversize-tile: the largest image one request may hold.")
@click.option("--compute-model", type=click.Choice(list(COMPUTE_MODELS)), default="auto", show_default=True,
              help="Where gsam_image sends its pixels (BLS): auto = gsam_trt with an engine or --profile, gsam_onnx "
                   "with --gpu, else gsam_python; in-process = onnxruntime inside gsam_image (a second copy of "
                   "the model).")
@click.option("--cuda-graphs", is_flag=True, help="gsam_trt: capture CUDA graphs at each profile's opt shape "
              "(needs profiles with max batch >= 2; Triton runs a graph only for a request of exactly that shape).")
@retired("--version", "was renamed --model-version (gsam --version prints gsam's own version)")
@retired("--fp16", "was renamed --precision fp16", is_flag=True)
@retired("--accelerator-precision", "was renamed --precision")
@retired("--tile", "was renamed --oversize-tile (in predict and eval, --tile tiles every image)")
@retired("--max-image-pixels", "was renamed --max-tiled-pixels")
def triton_build(onnx_path, repo, engine, model_version, instances, gpu, profiles, precision, max_pixels,
                 memory_budget, max_batch, preferred, queue_delay_us, oversize_tile, overlap, max_tiled_pixels,
                 compute_model, cuda_graphs) -> None:
    """Write or update a model repository: gsam_python, gsam_image, gsam_onnx (and gsam_trt with --engine or --profile).

    gsam_python takes tensors (image FP32 or image_uint8 UINT8, [N, 3, H, W]) and returns
    logits and/or mask, batching same-shape requests; gsam_image takes encoded PNG/JPEG/TIFF
    bytes and returns the mask as PNG, computing in the repository's compute model through BLS
    (--compute-model). Configs are built as Triton ModelConfig messages and carry the model's facts,
    the request bound and the ONNX file's sha256 as parameters.

    Example: gsam triton build model.onnx --repo triton_models --max-pixels 4194304 --preferred-batch 4

    Example (36-megapixel requests in bounded memory): gsam triton build model.onnx --oversize-tile 1024

    \b
    Example (gsam_trt's config now, the engine later from trtexec on the GPU host):
      gsam triton build model.onnx --profile min=1x3x128x128,opt=1x3x512x512,max=1x3x1024x1024
      --profile min=1x3x1024x1024,opt=1x3x1536x1536,max=1x3x2048x2048
    """
    from gsam.deploy.triton.repository import Batching, Tiling, build_repository
    from gsam.export.metadata import read_onnx_facts
    from gsam.export.profiles import parse_profile

    from ..errors import GSAMError

    if max_pixels and memory_budget:
        raise GSAMError("give --max-pixels or --memory-budget, not both")
    if precision == "int8":
        raise GSAMError("--precision int8: onnxruntime's TensorRT accelerator builds fp32 or fp16; an int8 ONNX file "
                        "(gsam export onnx --precision int8) serves as it is with --precision fp32")
    if preferred and max_batch == 1:
        raise GSAMError("--preferred-batch needs the dynamic batcher: give --max-batch 2 or more")
    if memory_budget:
        from gsam.runtime.memory import max_pixels_within

        max_pixels = max_pixels_within(onnx_path, memory_budget << 20)
        click.echo(f"--memory-budget {memory_budget} MiB -> --max-pixels {max_pixels}")
    min_size = read_onnx_facts(onnx_path).min_size
    written = build_repository(
        onnx_path, repo, engine=engine, version=model_version, instances=instances, gpu=gpu,
        trt_profiles=[parse_profile(p, min_size) for p in profiles] or None,
        accelerator_precision=precision, max_pixels=max_pixels,
        batching=Batching(max_batch, tuple(preferred), queue_delay_us) if max_batch > 1 else None,
        tiling=Tiling(oversize_tile or 0, overlap, max_tiled_pixels), compute_model=compute_model,
        cuda_graphs=cuda_graphs, log=click.echo)
    for folder in written:
        click.echo(f"wrote {folder}/config.pbtxt and {folder}/{model_version}/")
