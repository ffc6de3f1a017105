"""`gsam demo`: the whole chain on generated data, end to end, on a CPU in a few minutes."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click

DEMO_SIZES = [(96, 128), (200, 150), (257, 331)]
# The demo's dataset and training recipe: shared with the test that holds it to its mIoU.
DEMO_DATA = dict(num_classes=3, train=48, val=8, min_size=64, max_size=160, seed=0)
DEMO_EPOCHS = 30
DEMO_CROP = (80, 80)


DEMO_BATCH = 4
DEMO_LR = 2e-3
NEXT_STEPS = """
next, with your own data (README, "From the demo to your own data"):
  gsam data check DATA                 # DATA/{train,val}/{images,masks}, masks hold class ids
  gsam train --data DATA --out runs/mine --model vit_b --sam-checkpoint sam_vit_b_01ec64.pth
  gsam eval runs/mine --data DATA      # then: gsam export onnx runs/mine --out mine.onnx"""


def demo_train_config(data: Path, run: Path, epochs: int = DEMO_EPOCHS):
    """The tiny model on the CPU under --amp auto (fp32 unless bf16 is measured faster on this CPU); with no
    SAM weights every parameter trains. The recipe is the cheapest that reached mIoU 0.90 with margin on
    both CPU kinds measured (benchmarks/demo_recipe.py, BENCHMARKS.md)."""
    from .train.config import TrainConfig

    return TrainConfig(data=str(data), out=str(run), model="tiny", epochs=epochs, batch_size=DEMO_BATCH, lr=DEMO_LR,
                       workers=0, crop=DEMO_CROP, val_every=max(1, epochs // 4), device="cpu")


def _stage(number: int, total: int, text: str) -> None:
    click.secho(f"\n[{number}/{total}] {text}", bold=True)


def _median_ms(segmenter, images, repeats: int) -> float:
    segmenter(images)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        segmenter(images)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def run_demo(out: Path, epochs: int, exporter: str, repeats: int) -> None:
    """The seven stages, each printed as it starts: data, training, evaluation, export, repository,
    requests over HTTP and gRPC, and the latency table."""
    total, started = 7, time.perf_counter()
    run, spec = _train_and_evaluate(out, epochs, total)
    onnx_path, repo = _export_and_build(out, run, exporter, total)
    _stage(6, total, "starting Triton and sending images of three sizes over HTTP and gRPC")
    latencies = _serve_and_time(out, run, onnx_path, repo, spec=spec, repeats=repeats)
    _stage(7, total, f"median latency per image (ms, {repeats} runs, batch 1, this CPU)")
    click.echo("  " + f"{'backend':<13}" + "".join(f"{f'{h}x{w}':>11}" for h, w in DEMO_SIZES))
    for name, values in latencies.items():
        click.echo("  " + f"{name:<13}" + "".join(f"{v:11.1f}" for v in values))
    click.echo(f"\ndone in {time.perf_counter() - started:.0f} s. Everything is in {out}/:\n"
               f"  data/ (dataset)  run/ (checkpoints, metrics.jsonl, curves.png)  model.onnx\n"
               f"  triton_models/ (repository)  predictions/triton-*/ (masks/, overlays/)  triton.log")
    click.echo(NEXT_STEPS)


def _train_and_evaluate(out: Path, epochs: int, total: int):
    """Stages 1-3: the generated dataset, the trained run, its native-size validation scores."""
    import torch

    from .data.dataset import SegmentationDataset
    from .data.synth import write_synthetic_dataset
    from .model.run import load_trained
    from .train.engine import evaluate
    from .train.trainer import train

    _stage(1, total, f"generating a demo dataset in {out / 'data'}")
    spec = write_synthetic_dataset(out / "data", **DEMO_DATA)
    _stage(2, total, f"training the tiny GSAM for {epochs} epochs (random crops {DEMO_CROP[0]}x{DEMO_CROP[1]}, "
                     "CPU; no SAM weights, so the ViT trains too)")
    config = demo_train_config(out / "data", out / "run", epochs)
    run = train(config, resume=_resumable(config))
    _stage(3, total, "evaluating on whole validation images at native size")
    model, _ = load_trained(run)
    result = evaluate(model, SegmentationDataset.open(out / "data", "val", spec), spec.num_classes, torch.device("cpu"))
    for name, iou in zip(spec.names, result["iou"]):
        click.echo(f"  {name:<12} IoU {iou if iou is None else round(iou, 4)}")
    click.echo(f"  mIoU {result['miou']:.4f}, pixel accuracy {result['pixel_acc']:.4f}")
    return run, spec


def _resumable(config) -> bool:
    """Run again into the same folder, the demo continues (or reuses) a run of the same recipe, and says so;
    a run of other settings (another --epochs) is replaced by a new one, and that is said too."""
    import shutil

    from .model.checkpoint import read_gsam_checkpoint

    last = Path(config.out) / "last.pt"
    if not last.is_file():
        return False
    try:
        saved = read_gsam_checkpoint(last)
        done, before = saved["epoch"], saved["train_config"]
    except Exception:  # unreadable (cut off by a kill): start again
        done, before = None, None
    wanted = config.to_dict()
    if before is not None and {k: before.get(k) for k in wanted} == wanted:
        click.echo(f"  {config.out} holds this recipe's run after epoch {done} of {config.epochs}: "
                   + ("reusing it" if done >= config.epochs else "resuming it"))
        return True
    differs = sorted(k for k in wanted if before is None or before.get(k) != wanted[k])
    click.echo(f"  {config.out} holds a run of other settings ({', '.join(differs) or 'unreadable'}): starting anew")
    shutil.rmtree(config.out)
    return False


def _export_and_build(out: Path, run: Path, exporter: str, total: int) -> tuple[Path, Path]:
    """Stages 4-5: the verified ONNX file and the Triton repository built from it."""
    from gsam.deploy.triton.repository import build_repository
    from gsam.export.onnx import export_checkpoint

    _stage(4, total, f"exporting one ONNX file with dynamic height/width ({exporter} exporter) and verifying it")
    onnx_path = out / "model.onnx"
    click.echo(export_checkpoint(run, onnx_path, exporter=exporter, log=click.echo).table())
    _stage(5, total, "writing the Triton model repository")
    repo = out / "triton_models"
    for folder in build_repository(onnx_path, repo):
        click.echo(f"  {folder}")
    return onnx_path, repo


def _serve_and_time(out: Path, run: Path, onnx_path: Path, repo: Path, *, spec, repeats: int) -> dict[str, list[float]]:
    """Stage 6: every backend on the same images through the one Predictor `gsam.load` gives; Triton's masks
    and overlays are written. Median ms per size."""
    import numpy as np
    from PIL import Image

    from gsam.model.segmenter import to_model_input
    from gsam.runtime.predictor import load
    from gsam.runtime.serving.server import TritonServer, free_port
    from gsam.runtime.triton_names import TENSOR_MODEL

    from .data.imageio import read_image

    source = Image.fromarray(read_image(sorted((out / "data" / "val" / "images").glob("*.png"))[0]))
    images = {(h, w): np.asarray(source.resize((w, h), Image.BILINEAR)) for h, w in DEMO_SIZES}
    latencies: dict[str, list[float]] = {}
    with TritonServer(repo, [TENSOR_MODEL], free_port(), free_port(), log_path=out / "triton.log") as server:
        click.echo(f"  ready: HTTP {server.http_url}, gRPC {server.grpc_url}")
        targets = {"torch": (run, "torch"), "onnxruntime": (onnx_path, "onnxruntime"),
                   "triton-http": (server.http_url, "triton-http"), "triton-grpc": (server.grpc_url, "triton-grpc")}
        for name, (target, backend) in targets.items():
            latencies[name] = []
            with load(target, backend, device="cpu", tile_above=1 << 30) as predictor:
                for (h, w), image in images.items():
                    result = predictor.predict(image, name=f"{h}x{w}")
                    if name.startswith("triton"):
                        result.save(out / "predictions" / name)
                    latencies[name].append(_median_ms(predictor.segmenter, to_model_input(image), repeats))
    click.echo("  Triton stopped")
    return latencies
