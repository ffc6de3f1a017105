"""One training epoch and one evaluation pass: plain loops in the torchvision-references style."""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Iterable

import torch
from torch import nn
from tqdm import tqdm

from .distributed import DistContext
from .metrics import ConfusionMatrix


def autocast_context(device: torch.device, amp: str):
    if amp == "off":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def train_one_epoch(model: nn.Module, loader: Iterable, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, device: torch.device, amp: str, max_steps: int | None,
                    progress: tqdm | None, last_miou: float | None) -> dict:
    """Returns mean loss, steps, images and images per second."""
    model.train()
    total_loss, steps, images, start = 0.0, 0, 0, time.perf_counter()
    for batch, target in loader:
        if max_steps is not None and steps >= max_steps:
            break
        batch, target = batch.to(device, non_blocking=True), target.to(device, non_blocking=True)
        with autocast_context(device, amp):
            loss = loss_fn(model(batch).float(), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        steps, images = steps + 1, images + batch.shape[0]
        total_loss += loss.item()
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
def evaluate(model: nn.Module, dataset, num_classes: int, device: torch.device, amp: str = "off",
             dist: DistContext | None = None, progress: bool = False, tile: int | None = None,
             overlap: int = 128) -> dict:
    """Images at native size, batch 1; with several processes each takes a shard.

    With `tile`, each image runs in overlapping tiles with blended logits (as `gsam predict --tile`),
    so validation images larger than memory can still be scored at native size.
    """
    from ..model.gsam import GSAM
    from ..runtime.backends.tiling import segment_tiled

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
                with autocast_context(device, amp):
                    return core(torch.from_numpy(batch).to(device)).float().cpu().numpy()

            mask = torch.from_numpy(segment_tiled(run, image[None].numpy(), tile, overlap, logits=False)["mask"][0])
        else:
            with autocast_context(device, amp):
                logits = core(image[None].to(device))
            mask = core.predict_mask(logits.float())[0].cpu()
        confusion.update(mask, target, dataset.spec.ignore_index)
    # nccl reduces device tensors only
    confusion.matrix = dist.all_reduce_sum(confusion.matrix.to(device)).cpu()
    return confusion.compute()
