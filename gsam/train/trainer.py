"""`gsam train`: build the model and data from a TrainConfig, run epochs, keep the run directory whole.

`train` reads as the loop it is; each step it calls does one job: open the data (`_open_data`),
build or restore the model (`_build_model`), restore optimizer and RNG state on resume
(`_restore`), run one epoch with its validation (`_run_epoch`) and write its results
(`_record_epoch`). Their order is the order random numbers are drawn in, which exact resume needs.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..amp import AmpChoice, choose_amp, confirm_on_training_step, grad_scaler
from ..data.dataset import ClassSpec, SegmentationDataset, open_dataset_spec
from ..data.transforms import ResizeTransform, TrainTransform
from ..device import resolve_device
from ..errors import GSAMError
from ..model import build_gsam, get_config
from ..model.checkpoint import load_sam_checkpoint, read_gsam_checkpoint, save_gsam_checkpoint
from ..model.gsam import GSAM
from ..model.run import RunDir
from ..model.trainable import count_parameters
from .config import TrainConfig
from .curves import plot_curves
from .distributed import DistContext
from .engine import evaluate, train_one_epoch
from .losses import SegmentationLoss
from .recipes import check_dataset_fits


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


@dataclass
class _Data:
    spec: ClassSpec
    train_set: SegmentationDataset
    val_set: SegmentationDataset | None
    sampler: DistributedSampler
    loader: DataLoader
    crop: tuple[int, int]
    num_outputs: int


@dataclass
class _Session:
    """What every epoch of one invocation uses."""

    cfg: TrainConfig
    device: torch.device
    amp: str  # cfg.amp resolved for this device ("auto" measured): off, bf16 or fp16
    dist: DistContext
    run: RunDir
    data: _Data
    model: GSAM
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loss_fn: SegmentationLoss
    writer: Any  # a TensorBoard SummaryWriter, or None
    progress: bool
    say: Callable[[str], None]


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
    session, checkpoint = _start(cfg, resume, progress)
    start_epoch, best_miou = _restore(session, checkpoint) if checkpoint is not None else (0, -1.0)
    if session.dist.is_main:
        session.run.write_config({"model": session.model.config.to_dict(), "classes": session.data.spec.to_dict(),
                                  "train": cfg.to_dict()})
    last_miou = None
    for epoch in range(start_epoch, min(cfg.epochs, stop_after or cfg.epochs)):
        row = _run_epoch(session, epoch, last_miou)
        last_miou = row.get("val_miou", last_miou)
        if session.dist.is_main:
            best_miou = _record_epoch(session, row, best_miou)
        session.dist.barrier()
    if session.dist.is_main:
        plot_curves(session.run)
        if session.writer is not None:
            session.writer.close()
    session.dist.close()
    return session.run.path


def _start(cfg: TrainConfig, resume: bool, progress: bool) -> tuple[_Session, dict | None]:
    """Device and processes, data (checked before the run directory is created), model, optimizer; and
    the checkpoint being resumed."""
    device = resolve_device(cfg.device)
    amp = choose_amp(cfg.amp, device)
    if cfg.accumulate < 1:
        raise GSAMError(f"--accumulate must be >= 1; got {cfg.accumulate}")
    dist = DistContext.from_env(device.type == "cuda")
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    say = (lambda msg: tqdm.write(msg)) if dist.is_main and progress else (lambda msg: None)
    data = _open_data(cfg, dist, progress, device)
    run = RunDir(cfg.out)  # created only once the data has passed its checks
    if dist.is_main:
        run.prepare(resume)
    dist.barrier()
    checkpoint = read_gsam_checkpoint(run.last) if resume else None
    model = _build_model(cfg, data, checkpoint, dist, say).to(device)
    loss_fn = SegmentationLoss(data.num_outputs, data.spec.ignore_index)
    amp = _training_amp(amp, cfg, device, model=model, crop=data.crop, loss_fn=loss_fn, checkpoint=checkpoint)
    total, trainable = count_parameters(model)
    say(f"model {cfg.model}: {total / 1e6:.1f} M parameters, {trainable / 1e6:.1f} M trainable; "
        f"{data.num_outputs} output channel(s) for classes {', '.join(data.spec.names)}; "
        f"crop {data.crop[0]}x{data.crop[1]}; {device}; {amp.line()}")
    if amp.warning and dist.is_main:
        print(amp.warning, file=sys.stderr)
    # foreach: one kernel per step for all tensors instead of a Python loop over hundreds of small ones
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                 weight_decay=cfg.weight_decay, foreach=True)
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if dist.enabled else model
    session = _Session(cfg, device, amp.mode, dist, run, data, model, net, optimizer,
                       torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs),
                       grad_scaler(device, amp.mode), loss_fn,
                       _tensorboard(run.path) if dist.is_main else None, progress, say)
    return session, checkpoint


def _training_amp(amp: AmpChoice, cfg: TrainConfig, device: torch.device, *, model: GSAM, crop: tuple[int, int],
                  loss_fn: SegmentationLoss, checkpoint: dict | None) -> AmpChoice:
    """auto is measured once per run: a resumed run keeps the mode it was trained in, so it replays exactly."""
    if cfg.amp == "auto" and checkpoint is not None and checkpoint.get("amp") in ("off", "bf16", "fp16"):
        return AmpChoice(checkpoint["amp"], "the mode this run was started in")
    return confirm_on_training_step(amp, cfg.amp, device, model=model, batch=(cfg.batch_size, *crop), loss_fn=loss_fn,
                                    key=f"{cfg.model}|crop {crop[0]}x{crop[1]}|batch {cfg.batch_size}")


def _open_data(cfg: TrainConfig, dist: DistContext, progress: bool, device: torch.device) -> _Data:
    """The dataset's classes, random-crop training set, native-size validation set and the loader."""
    spec = open_dataset_spec(cfg.data)
    if cfg.recipe:
        check_dataset_fits(cfg.recipe, spec.names, spec.ignore_index, cfg.data)
    crop = tuple(cfg.crop) if cfg.crop else get_config(cfg.model).train_size
    resize = tuple(cfg.resize) if cfg.resize else None
    show = dist.is_main and progress
    train_set = SegmentationDataset.open(cfg.data, "train", spec, TrainTransform(crop, spec.ignore_index, resize=resize),
                                         progress=show)
    val_set = (SegmentationDataset.open(cfg.data, "val", spec, ResizeTransform(resize) if resize else None, progress=show)
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
    return _Data(spec, train_set, val_set, sampler, loader, crop, output_channels(cfg, spec))


def _build_model(cfg: TrainConfig, data: _Data, checkpoint: dict | None, dist: DistContext,
                 say: Callable[[str], None]) -> GSAM:
    """The model, seeded; weights from the run being resumed, else from SAM's checkpoint, else random."""
    _seed_everything(cfg.seed)
    overrides = dict(num_classes=data.num_outputs, train_size=data.crop, class_names=data.spec.names,
                     token_stride=cfg.token_stride, cnn_pretrained=cfg.cnn_pretrained)
    if cfg.cnn:
        overrides["cnn"] = cfg.cnn
    model = build_gsam(cfg.model, **overrides)
    if not cfg.sam_checkpoint:
        # Without SAM's weights the "frozen" ViT is random noise: freezing it would only cost accuracy.
        model.requires_grad_(True)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    elif cfg.sam_checkpoint:
        say(f"SAM weights from {cfg.sam_checkpoint}: {load_sam_checkpoint(model, cfg.sam_checkpoint).summary()}")
    elif dist.is_main:
        print("warning: no --sam-checkpoint given: the ViT encoder starts from random weights, so every "
              "parameter trains, the ViT too (fine for a demo; for real fine-tuning pass sam_vit_b_01ec64.pth)",
              file=sys.stderr)
    return model


def _restore(session: _Session, checkpoint: dict) -> tuple[int, float]:
    """Optimizer, schedule, scaler and RNG state of the run being resumed: (epochs done, best mIoU)."""
    session.optimizer.load_state_dict(checkpoint["optimizer"])
    session.scheduler.load_state_dict(checkpoint["scheduler"])
    session.scaler.load_state_dict(checkpoint["scaler"])
    _set_rng_state(checkpoint["rng"])
    if session.dist.is_main:
        session.run.truncate_metrics(checkpoint["epoch"])
    session.say(f"resuming {session.run.path} after epoch {checkpoint['epoch']} of {session.cfg.epochs}")
    return checkpoint["epoch"], checkpoint["best_miou"]


def _run_epoch(session: _Session, epoch: int, last_miou: float | None) -> dict:
    """One epoch of training and, when due, validation at native size: the epoch's metrics row."""
    cfg, data = session.cfg, session.data
    shown = session.dist.is_main and session.progress
    data.sampler.set_epoch(epoch)
    windows = len(data.loader) // cfg.accumulate
    steps = windows if cfg.steps_per_epoch is None else min(windows, cfg.steps_per_epoch)
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not shown, leave=False, dynamic_ncols=True)
    started = time.perf_counter()
    stats = train_one_epoch(session.net, data.loader, session.loss_fn, session.optimizer, session.scaler,
                            device=session.device, amp=session.amp, max_steps=cfg.steps_per_epoch, progress=bar,
                            last_miou=last_miou, accumulate=cfg.accumulate)
    bar.close()
    row = {"epoch": epoch + 1, "lr": session.optimizer.param_groups[0]["lr"], **stats}
    session.scheduler.step()
    if data.val_set is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
        result = evaluate(session.net, data.val_set, data.spec.num_classes, session.device, amp=session.amp,
                          dist=session.dist, progress=shown)
        row.update(val_miou=result["miou"], val_pixel_acc=result["pixel_acc"], val_iou=result["iou"])
    row["time_s"] = time.perf_counter() - started
    return row


def _record_epoch(session: _Session, row: dict, best_miou: float) -> float:
    """metrics.jsonl, last.pt, best.pt on a new best, TensorBoard and the log line: the new best mIoU."""
    improved = row.get("val_miou", -1.0) > best_miou or session.data.val_set is None
    best_miou = max(best_miou, row.get("val_miou", -1.0))
    session.run.append_metrics(row)
    payload = dict(optimizer=session.optimizer.state_dict(), scheduler=session.scheduler.state_dict(),
                   scaler=session.scaler.state_dict(), amp=session.amp, epoch=row["epoch"], best_miou=best_miou, metrics=row,
                   rng=_rng_state(), classes=session.data.spec.to_dict(), train_config=session.cfg.to_dict())
    save_gsam_checkpoint(session.run.last, session.model, **payload)
    if improved:
        save_gsam_checkpoint(session.run.best, session.model, **payload)
    if session.writer is not None:
        for key in ("train_loss", "val_miou", "val_pixel_acc", "lr", "images_per_s"):
            if row.get(key) is not None:
                session.writer.add_scalar(key, row[key], row["epoch"])
    val_text = f", val mIoU {row['val_miou']:.4f}" if "val_miou" in row else ""
    session.say(f"epoch {row['epoch']}/{session.cfg.epochs}: loss {row['train_loss']:.4f}{val_text}, "
                f"{row['images_per_s']:.1f} img/s, {row['time_s']:.1f} s" + (" (best)" if improved else ""))
    return best_miou


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
