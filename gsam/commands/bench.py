"""`gsam bench`: latency and throughput of backends across image sizes."""

from __future__ import annotations

from pathlib import Path

import click

from .options import MODEL, SIZE_LIST, amp_option, int_list, out_option, retired, triton_model_option

LOCAL = ("torch", "onnxruntime", "tensorrt")
TRITON = ("triton-http", "triton-grpc", "triton-image")


def _backend_list(ctx, param, value):
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in LOCAL + TRITON]
    if unknown or not names:
        raise click.BadParameter(f"unknown backend {unknown[0] if unknown else value!r}; "
                                 f"expected a comma-separated list of {', '.join(LOCAL + TRITON)}")
    return names


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.option("--backends", default="onnxruntime,torch", show_default=True, callback=_backend_list,
              help=f"Comma-separated, timed in this order; ratios are to the first. One of: {', '.join(LOCAL + TRITON)}.")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), help="Use this ONNX file instead of exporting.")
@click.option("--engine", type=click.Path(dir_okay=False), help="TensorRT engine for the tensorrt backend.")
@click.option("--url", help="Triton server (host:port) for triton-*; default: start one from the ONNX file.")
@triton_model_option()
@click.option("--sizes", type=SIZE_LIST, default="256x256,512x512,480x640", show_default=True)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True)
@click.option("--iters", type=click.IntRange(1), default=50, show_default=True, help="Requests per case.")
@click.option("--duration", type=click.FloatRange(0.1), help="Instead: seconds per case.")
@click.option("--concurrency", default="1", show_default=True, callback=int_list, help="e.g. 1,4")
@click.option("--threads", type=click.IntRange(1), help="Intra-op threads for torch and onnxruntime.")
@click.option("--baseline", type=click.Choice(["sam-vit-b"]), help="Add SAM ViT-B at a fixed 1024x1024 (onnxruntime).")
@amp_option("Run the torch backend under autocast: bf16 on the CPU (compared with torch's bf16 matmul rate).")
@out_option("Writes bench.json, bench.csv, PNG plots.", type=click.Path(file_okay=False))
@retired("--backend", "was renamed --backends (a comma-separated list)")
@retired("--model", "was replaced by the first argument, as in predict, eval and export: gsam bench MODEL ...")
def bench(backends, model_path, onnx_path, engine, url, triton_model, sizes, batch, warmup, iters, duration,
          concurrency, threads, baseline, amp, out) -> None:
    """Latency (p50/p90/p99) and throughput of each backend at each size and concurrency for MODEL (a run
    directory or .pt, torch, exported for the others; or a gsam .onnx file).

    All backends see the same seeded images. Each row also reports FLOPs per image, the
    achieved GFLOP/s and its fraction of the matmul rate its own engine reaches at its
    precision, measured in the same run (torch fp32/bf16, onnxruntime fp32/int8).

    \b
    Example: gsam bench runs/demo --backends onnxruntime,torch,triton-grpc --sizes 256x256,480x640 --out bench/
    bf16:    gsam bench runs/demo --backends torch --amp bf16 --out bench_bf16/
    """
    from gsam.bench.harness import BenchPlan
    from gsam.bench.runner import BenchRequest, run_bench

    plan = BenchPlan(sizes, batch=batch, warmup=warmup, iters=iters, duration=duration, concurrency=concurrency)
    request = BenchRequest(backends, Path(model_path), Path(out), plan, onnx_path=onnx_path, engine=engine, url=url,
                           triton_model=triton_model, threads=threads, baseline=baseline, amp=amp)
    click.echo(run_bench(request, log=click.echo))
