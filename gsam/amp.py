"""Mixed precision in one place: which mode to run (`--amp auto` measures), its autocast context and grad scaler.

`auto` (the default everywhere --amp exists) runs bf16 only where it is faster on the device in front
of it: on CUDA where the GPU has bf16 (fp16 with a grad scaler on older GPUs); on a CPU where a short
measured probe shows bf16 autocast at least BF16_MIN_SPEEDUP times faster than fp32, or faster at all
where torch reports native bf16 kernels (avx512_bf16, AMX). On an AVX2-only CPU bf16 is emulated and
about 10x slower, so auto runs fp32 there. Where the probe says bf16, training confirms it on the model's
own step (`confirm_on_training_step`): on a CPU with native bf16, a small model at a small crop spends
its time casting and can still be faster in fp32. fp16 needs a grad scaler, which only CUDA provides.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from .errors import GSAMError
from .precisions import AMP_CHOICES

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
BF16_MIN_SPEEDUP = 1.3  # a CPU without native bf16 kernels must measure at least this much faster


@dataclass(frozen=True)
class AmpChoice:
    """The mode a command runs under, and why; `warning` when an explicit choice will be slow."""

    mode: str
    reason: str
    warning: str | None = None

    def line(self) -> str:
        return f"amp: {self.mode} ({self.reason})"


def check_amp(amp: str, device: torch.device, flag: str = "--amp") -> None:
    """A clear one-line error for an unknown mode or one the device cannot run."""
    if amp not in AMP_CHOICES:
        raise GSAMError(f"{flag} must be one of {', '.join(AMP_CHOICES)}; got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise GSAMError(f"{flag} fp16 needs a CUDA device (its grad scaler is CUDA-only); "
                        f"this run is on {device.type}: use {flag} auto or bf16 instead")


def _cpu_bf16_verdict() -> tuple[bool, str]:
    """(bf16 is worth it, the measured reason) for this CPU."""
    from .machine import cpu_bf16_speedup, torch_native_bf16

    native, speedup = torch_native_bf16(), cpu_bf16_speedup()["speedup"]
    kernels = "native bf16 kernels" if native else "no native bf16 kernels"
    measured = (f"bf16 measured {speedup:.1f}x faster than fp32" if speedup >= 1 else
                f"bf16 measured {1 / speedup:.1f}x slower than fp32")
    worth = speedup >= BF16_MIN_SPEEDUP or (native and speedup >= 1.0)
    return worth, f"this CPU has {kernels}; {measured}"


def choose_amp(amp: str, device: torch.device, flag: str = "--amp") -> AmpChoice:
    """Resolve `auto` for `device`, and say why; an explicit mode is kept, with a warning when it is slow here."""
    check_amp(amp, device, flag)
    if device.type == "cuda":
        if amp != "auto":
            return AmpChoice(amp, "as asked")
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported():
            return AmpChoice("bf16", f"{name} runs bf16")
        return AmpChoice("fp16", f"{name} has no bf16; fp16 with a grad scaler")
    if amp == "off":
        return AmpChoice("off", "as asked")
    worth, reason = _cpu_bf16_verdict()
    if amp == "auto":
        return AmpChoice("bf16" if worth else "off", reason)
    warning = None if worth else f"warning: {flag} bf16 will be slow here ({reason}); {flag} auto runs fp32 on this CPU"
    return AmpChoice("bf16", "as asked", warning)


def confirm_on_training_step(choice: AmpChoice, asked: str, device: torch.device, *, model: torch.nn.Module,
                             batch: tuple[int, int, int], loss_fn, key: str) -> AmpChoice:
    """Keep auto's CPU bf16 only if the model's own training step is faster in it, measured once and cached.

    `batch` is (batch size, height, width) of the training crops; `key` names the workload in the probe
    cache (model and crop). Runs on a copy of the model, so weights and BatchNorm statistics are untouched.
    """
    if asked != "auto" or device.type != "cpu" or choice.mode != "bf16":
        return choice
    from .machine import cached_probe

    result = cached_probe(f"amp-train-step|{key}", lambda: measure_step_bf16_speedup(model, batch, loss_fn))
    speedup = result["speedup"]
    if speedup >= 1.0:
        return AmpChoice("bf16", f"{choice.reason}; this model's training step {speedup:.2f}x faster in bf16")
    return AmpChoice("off", f"{choice.reason}, but this model's training step at this crop measured "
                            f"{1 / speedup:.2f}x slower in bf16")


def measure_step_bf16_speedup(model: torch.nn.Module, batch: tuple[int, int, int], loss_fn,
                              repeats: int = 3) -> dict:
    """fp32 time / bf16-autocast time of forward and backward of a copy of `model` on random crops."""
    from .machine import best_seconds_interleaved

    probe = copy.deepcopy(model).train()
    generator = torch.Generator().manual_seed(0)
    size, height, width = batch
    images = torch.rand(size, 3, height, width, generator=generator) * 255
    target = torch.randint(0, max(loss_fn.num_outputs, 2), (size, height, width), generator=generator)

    def step(mode: str):
        def run():
            with autocast(torch.device("cpu"), mode):
                loss = loss_fn(probe(images).float(), target)
            loss.backward()
            probe.zero_grad(set_to_none=True)
        return run

    best = best_seconds_interleaved({"off": step("off"), "bf16": step("bf16")}, repeats)
    return {"fp32_ms": round(best["off"] * 1e3, 3), "bf16_ms": round(best["bf16"] * 1e3, 3),
            "speedup": round(best["off"] / best["bf16"], 3)}


def autocast(device: torch.device, amp: str):
    """The autocast context for a resolved mode on `device` (a no-op context for "off")."""
    if amp == "off":
        return nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"autocast takes a resolved mode (off, bf16, fp16); got {amp!r}: resolve it with choose_amp")
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """Enabled for fp16 only; bf16 has fp32's exponent range and needs no loss scaling."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")
