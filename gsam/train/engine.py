"""One training epoch and one evaluation pass: plain loops in the torchvision-references style."""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Iterable

import torch
from torch import nn
from tqdm import tqdm

from ..amp import autocast
from ..data.metrics import ConfusionMatrix
from .distributed import DistContext


def train_one_epoch(model: nn.Module, loader: Iterable, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, *, device: torch.device, amp: str = "off",
                    max_steps: int | None = None, progress: tqdm | None = None, last_miou: float | None = None,
                    accumulate: int = 1) -> dict:
    """Returns mean loss, optimizer steps, images and images per second.

    Gradient accumulation: each optimizer step sums the gradients of `accumulate` consecutive
    micro-batches, each loss scaled by 1/accumulate, so a step equals one step on their concatenation
    (for losses that average over equally many pixels per micro-batch, and layers without batch
    statistics). Windows never cross an epoch: micro-batches left over after the last full window
    are not drawn, and `max_steps` counts optimizer steps. Under DDP only a window's last backward
    all-reduces (`no_sync` on the others); with fp16 the grad scaler unscales and steps once per window.
    """
    model.train()
    total_loss, steps, images, start = 0.0, 0, 0, time.perf_counter()
    batches = iter(loader)
    while max_steps is None or steps < max_steps:
        window = []
        for _ in range(accumulate):
            item = next(batches, None)
            if item is None:
                break
            window.append(item)
        if len(window) < accumulate:
            break  # an incomplete window is dropped, like DataLoader(drop_last=True) drops a short batch
        optimizer.zero_grad(set_to_none=True)
        window_loss = 0.0
        for index, (batch, target) in enumerate(window):
            batch, target = batch.to(device, non_blocking=True), target.to(device, non_blocking=True)
            final = index == accumulate - 1
            sync = nullcontext() if final or not hasattr(model, "no_sync") else model.no_sync()
            with sync:
                with autocast(device, amp):
                    loss = loss_fn(model(batch).float(), target) / accumulate
                scaler.scale(loss).backward()
            window_loss += loss.item()
            images += batch.shape[0]
        scaler.step(optimizer)
        scaler.update()
        steps += 1
        total_loss += window_loss
        if progress is not None:
            elapsed = time.perf_counter() - start
            postfix = {"loss": f"{total_loss / steps:.4f}", "img/s": f"{images / elapsed:.1f}"}
            if last_miou is not None:
                postfix["mIoU"] = f"{last_miou:.3f}"
            progress.set_postfix(postfix, refresh=False)
            progress.update(1)
    elapsed = time.perf_counter() - start
    return {"train_loss": total_loss / max(steps, 1), "steps": steps, "images": images,
            "images_per_s": images / max(elapsed, 1e-9)}


@torch.no_grad()
def evaluate(model: nn.Module, dataset, num_classes: int, device: torch.device, *, amp: str = "off",
             dist: DistContext | None = None, progress: bool = False, tile: int | None = None,
             overlap: int = 128) -> dict:
    """Images at native size, batch 1; with several processes each takes a shard.

    With `tile`, each image runs in overlapping tiles with blended logits (as `gsam predict --tile`),
    so validation images larger than memory can still be scored at native size.
    """
    from ..model.gsam import GSAM
    from ..pixels.tiling import Tiles, segment_tiled

    dist = dist or DistContext()
    core = model.module if hasattr(model, "module") else model
    assert isinstance(core, GSAM)
    model.eval()
    confusion = ConfusionMatrix(num_classes)
    indices = range(dist.rank, len(dataset), dist.world_size)
    for index in tqdm(indices, desc="evaluating", disable=not progress, leave=False):
        image, target = dataset[index]
        if tile:
            def run(batch):
                with autocast(device, amp):
                    return core(torch.from_numpy(batch).to(device)).float().cpu().numpy()

            tiled = segment_tiled(run, image[None].numpy(), Tiles(tile, overlap, core.config.min_size), logits=False)
            mask = torch.from_numpy(tiled["mask"][0])
        else:
            with autocast(device, amp):
                logits = core(image[None].to(device))
            mask = core.predict_mask(logits.float())[0].cpu()
        confusion.update(mask, target, dataset.spec.ignore_index)
    # nccl reduces device tensors only
    confusion.matrix = dist.all_reduce_sum(confusion.matrix.to(device)).cpu()
    return confusion.compute()
