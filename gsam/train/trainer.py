"""`gsam train`: build the model and data from a TrainConfig, run epochs, keep the run directory whole."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..data.dataset import ClassSpec, SegmentationDataset, open_dataset_spec
from ..data.transforms import ResizeTransform, TrainTransform
from ..device import resolve_device
from ..errors import GSAMError
from ..model import build_gsam, count_parameters, get_config
from ..model.checkpoint import load_sam_checkpoint, read_gsam_checkpoint, save_gsam_checkpoint
from .amp import check_amp, grad_scaler
from .config import TrainConfig
from .distributed import DistContext
from .engine import evaluate, train_one_epoch
from .losses import SegmentationLoss
from .recipes import check_dataset_fits
from .run_dir import RunDir


def output_channels(cfg: TrainConfig, spec: ClassSpec) -> int:
    """1 for binary data (the paper's BCE recipe) unless --num-classes says 2; else the class count."""
    wanted = cfg.num_classes or (1 if spec.binary else spec.num_classes)
    allowed = {1, 2} if spec.binary else {spec.num_classes}
    if wanted not in allowed:
        raise GSAMError(f"--num-classes {wanted} does not fit the dataset's {spec.num_classes} classes "
                        f"({', '.join(spec.names)}); expected {' or '.join(map(str, sorted(allowed)))}")
    return wanted


def _rng_state() -> dict:
    """Every generator the loop draws from, in types torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, stop_after: int | None = None) -> Path:
    """Train per `cfg`; with resume, continue cfg.out from its last.pt exactly. Returns the run directory.

    stop_after ends this invocation after that epoch (for time-limited jobs); --resume continues it.

    cfg.accumulate > 1 steps the optimizer once per that many micro-batches of cfg.batch_size each
    (see engine.train_one_epoch); cfg.steps_per_epoch then counts optimizer steps. Checkpoints are
    written at epoch ends and an epoch holds whole windows only, so every checkpoint sits on a window
    boundary: a run interrupted in the middle of a window resumes from the last epoch's checkpoint and
    recomputes that window from its first micro-batch (gradients of a partial window are never saved),
    reproducing the uninterrupted run. The learning-rate schedule steps per epoch, so accumulation
    does not change it.
    """
    device = resolve_device(cfg.device)
    check_amp(cfg.amp, device)
    if cfg.accumulate < 1:
        raise GSAMError(f"--accumulate must be >= 1; got {cfg.accumulate}")
    dist = DistContext.from_env(device.type == "cuda")
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    say = (lambda msg: tqdm.write(msg)) if dist.is_main and progress else (lambda msg: None)

    spec = open_dataset_spec(cfg.data)
    if cfg.recipe:
        check_dataset_fits(cfg.recipe, spec.names, spec.ignore_index, cfg.data)
    num_outputs = output_channels(cfg, spec)
    crop = tuple(cfg.crop) if cfg.crop else get_config(cfg.model).train_size
    model_overrides = dict(num_classes=num_outputs, train_size=crop, class_names=spec.names,
                           token_stride=cfg.token_stride, cnn_pretrained=cfg.cnn_pretrained)
    if cfg.cnn:
        model_overrides["cnn"] = cfg.cnn
    resize = tuple(cfg.resize) if cfg.resize else None
    train_set = SegmentationDataset.open(cfg.data, "train", spec, TrainTransform(crop, spec.ignore_index, resize=resize),
                                         progress=dist.is_main and progress)
    val_set = (SegmentationDataset.open(cfg.data, "val", spec, ResizeTransform(resize) if resize else None,
                                        progress=dist.is_main and progress)
               if (Path(cfg.data) / "val").is_dir() else None)
    min_size = get_config(cfg.model, token_stride=cfg.token_stride).min_size
    if resize is not None and min(resize) < min_size:
        raise GSAMError(f"--resize {resize[0]}x{resize[1]}: below the model's minimum side of {min_size}")
    if val_set is not None and resize is None:
        _check_native_sizes(val_set, min_size)
    sampler = DistributedSampler(train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                        drop_last=len(train_set) // dist.world_size >= cfg.batch_size,
                        pin_memory=device.type == "cuda")
    if len(loader) < cfg.accumulate:
        raise GSAMError(f"--accumulate {cfg.accumulate}: an epoch of {cfg.data}/train holds only {len(loader)} "
                        f"batch(es) of {cfg.batch_size} per process; lower --accumulate or --batch-size")
    run = RunDir(cfg.out)  # created only once the data has passed its checks
    if dist.is_main:
        run.prepare(resume)
    dist.barrier()

    _seed_everything(cfg.seed)
    model = build_gsam(cfg.model, **model_overrides)
    if not cfg.sam_checkpoint:
        # Without SAM's weights the "frozen" ViT is random noise: freezing it would only cost accuracy.
        model.requires_grad_(True)
    checkpoint = read_gsam_checkpoint(run.last) if resume else None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    elif cfg.sam_checkpoint:
        say(f"SAM weights from {cfg.sam_checkpoint}: {load_sam_checkpoint(model, cfg.sam_checkpoint).summary()}")
    elif dist.is_main:
        print("warning: no --sam-checkpoint given: the ViT encoder starts from random weights, so every "
              "parameter trains, the ViT too (fine for a demo; for real fine-tuning pass sam_vit_b_01ec64.pth)",
              file=sys.stderr)
    model.to(device)
    total, trainable = count_parameters(model)
    say(f"model {cfg.model}: {total / 1e6:.1f} M parameters, {trainable / 1e6:.1f} M trainable; "
        f"{num_outputs} output channel(s) for classes {', '.join(spec.names)}; crop {crop[0]}x{crop[1]}; {device}")

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                 weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    scaler = grad_scaler(device, cfg.amp)
    start_epoch, best_miou = 0, -1.0
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, best_miou = checkpoint["epoch"], checkpoint["best_miou"]
        _set_rng_state(checkpoint["rng"])
        if dist.is_main:
            run.truncate_metrics(start_epoch)
        say(f"resuming {run.path} after epoch {start_epoch} of {cfg.epochs}")
    if dist.is_main:
        run.write_config({"model": model.config.to_dict(), "classes": spec.to_dict(), "train": cfg.to_dict()})

    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if dist.enabled else model
    loss_fn = SegmentationLoss(num_outputs, spec.ignore_index)
    writer = _tensorboard(run.path) if dist.is_main else None
    last_miou = None
    for epoch in range(start_epoch, min(cfg.epochs, stop_after or cfg.epochs)):
        sampler.set_epoch(epoch)
        windows = len(loader) // cfg.accumulate
        steps = windows if cfg.steps_per_epoch is None else min(windows, cfg.steps_per_epoch)
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (dist.is_main and progress),
                   leave=False, dynamic_ncols=True)
        started = time.perf_counter()
        stats = train_one_epoch(net, loader, loss_fn, optimizer, scaler, device, cfg.amp, cfg.steps_per_epoch,
                                bar, last_miou, accumulate=cfg.accumulate)
        bar.close()
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **stats}
        scheduler.step()
        last_epoch = epoch + 1 == cfg.epochs
        if val_set is not None and ((epoch + 1) % cfg.val_every == 0 or last_epoch):
            result = evaluate(net, val_set, spec.num_classes, device, cfg.amp, dist, progress=dist.is_main and progress)
            last_miou = result["miou"]
            row.update(val_miou=result["miou"], val_pixel_acc=result["pixel_acc"], val_iou=result["iou"])
        row["time_s"] = time.perf_counter() - started
        if dist.is_main:
            improved = row.get("val_miou", -1.0) > best_miou or (val_set is None)
            best_miou = max(best_miou, row.get("val_miou", -1.0))
            run.append_metrics(row)
            payload = dict(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                           scaler=scaler.state_dict(), epoch=epoch + 1, best_miou=best_miou, metrics=row,
                           rng=_rng_state(), classes=spec.to_dict(), train_config=cfg.to_dict())
            save_gsam_checkpoint(run.last, model, **payload)
            if improved:
                save_gsam_checkpoint(run.best, model, **payload)
            if writer is not None:
                for key in ("train_loss", "val_miou", "val_pixel_acc", "lr", "images_per_s"):
                    if row.get(key) is not None:
                        writer.add_scalar(key, row[key], epoch + 1)
            val_text = f", val mIoU {row['val_miou']:.4f}" if "val_miou" in row else ""
            say(f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f}{val_text}, "
                f"{row['images_per_s']:.1f} img/s, {row['time_s']:.1f} s" + (" (best)" if improved else ""))
        dist.barrier()
    if dist.is_main:
        run.plot_curves()
        if writer is not None:
            writer.close()
    dist.close()
    return run.path


def _check_native_sizes(dataset: SegmentationDataset, min_size: int) -> None:
    """Validation runs on whole images, so each must reach the model's minimum side."""
    from ..data.imageio import image_size

    for sample in dataset.samples:
        h, w = image_size(sample.image)
        if min(h, w) < min_size:
            raise GSAMError(f"{sample.image}: validation image is {h}x{w}, below the model's minimum side of {min_size}")


def _tensorboard(path: Path):
    """TensorBoard scalars when the tensorboard package is installed; otherwise nothing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(path / "tensorboard"))
