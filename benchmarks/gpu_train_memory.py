"""GPU training step: GSAM vit_b at its small training crop against SAM vit_b at 1024x1024.

Times one optimizer step (forward, backward, Adam; median after warm-up) and reads the peak
CUDA memory of each case (torch.cuda.max_memory_allocated, reset per case):
  - GSAM vit_b at crop 256 (its own trainable set: SAM's ViT frozen, adapters and heads trained),
  - SAM vit_b at 1024 with only the mask decoder trained,
  - SAM vit_b at 1024 with every parameter trained,
each in fp32 and under bf16 autocast. Weights are random: time and memory do not depend on them.
Without a CUDA device it prints why and exits 0 (benchmarks/gpu_check.py runs the same step, and on the
CPU with --device cpu --smoke).

    python benchmarks/gpu_train_memory.py --batch 2 --amp off,bf16
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _gsam(crop: int, name: str = "vit_b"):
    from gsam.model import build_gsam

    model = build_gsam(name, num_classes=3, train_size=(crop, crop))
    return model, lambda out: out  # (B, 3, H, W) logits at the crop size


class _SamBatch(torch.nn.Module):
    """SAM without prompts on a batch: the encoder runs batched; the mask decoder, whose no-prompt
    tokens have batch size 1, runs once per image (it is a small part of the cost)."""

    def __init__(self, sam) -> None:
        super().__init__()
        self.sam = sam

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        sam = self.sam
        embeddings = sam.image_encoder(images)
        sparse, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
        masks = [sam.mask_decoder(image_embeddings=e[None], image_pe=sam.prompt_encoder.get_dense_pe(),
                                  sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                  multimask_output=False)[0] for e in embeddings]
        return torch.cat(masks)  # (B, 1, 256, 256)


def _sam(decoder_only: bool):
    from gsam.bench.sam_baseline import build_sam_baseline

    model = _SamBatch(build_sam_baseline().sam)
    for name, param in model.named_parameters():
        param.requires_grad_(not decoder_only or ".mask_decoder." in f".{name}")
    # one mask per image: upsample SAM's 256x256 logits to the 1024 input against a binary target
    return model, lambda out: torch.nn.functional.interpolate(out, scale_factor=4, mode="bilinear")


def step(case: str, crop: int, batch: int, amp: str, *, steps: int, warmup: int, device: str = "cuda",
         gsam_model: str = "vit_b") -> tuple[float, float, float]:
    """(median seconds per step, peak GiB allocated on CUDA (nan on the CPU), trainable parameters in millions)."""
    from gsam.amp import autocast, check_amp, grad_scaler

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    check_amp(amp, dev)
    torch.manual_seed(0)
    model, to_full = _gsam(crop, gsam_model) if case == "gsam" else _sam(decoder_only=case == "sam-decoder")
    model.to(dev).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    scaler = grad_scaler(dev, amp)
    images = torch.rand(batch, 3, crop, crop, device=dev) * 255
    if case != "gsam":  # SAM expects normalized pixels; the cost is the same either way
        images = (images - 128) / 64
    channels = 3 if case == "gsam" else 1
    target = torch.randint(0, channels, (batch, crop, crop), device=dev) if channels > 1 else \
        torch.randint(0, 2, (batch, 1, crop, crop), device=dev).float()
    loss_fn = torch.nn.CrossEntropyLoss() if channels > 1 else torch.nn.BCEWithLogitsLoss()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        sync()
        start = time.perf_counter()
        with autocast(dev, amp):
            out = to_full(model(images))
        loss = loss_fn(out.float(), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    trainable = sum(p.numel() for p in params) / 1e6
    del model, optimizer, images, target
    if cuda:
        torch.cuda.empty_cache()
    return statistics.median(times), peak, trainable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--crop", type=int, default=256, help="GSAM's training crop.")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--amp", default="off,bf16", help="Comma-separated: off, bf16, fp16.")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("skipped: no CUDA device on this machine (this benchmark needs a GPU)")
        return
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, batch {args.batch}, "
          f"median of {args.steps} steps after {args.warmup} warm-up\n")
    print("| model | input | trained | precision | trainable M | s / step | peak GiB |\n|---|---|---|---|---|---|---|")
    cases = [("gsam", "GSAM vit_b", args.crop, "adapters + heads"), ("sam-decoder", "SAM vit_b", 1024, "mask decoder"),
             ("sam-full", "SAM vit_b", 1024, "all parameters")]
    for case, label, size, trained in cases:
        for amp in args.amp.split(","):
            seconds, peak, trainable = step(case, size, args.batch, amp, steps=args.steps, warmup=args.warmup)
            print(f"| {label} | {size}x{size} | {trained} | {'fp32' if amp == 'off' else amp} | {trainable:.1f} "
                  f"| {seconds:.3f} | {peak:.2f} |", flush=True)


if __name__ == "__main__":
    main()
