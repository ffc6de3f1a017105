"""Mixed precision in one place: which modes a device supports, its autocast context and grad scaler.

bf16 runs on the CPU and on CUDA (CPU autocast uses oneDNN's bf16 kernels, several times
faster than fp32 on CPUs with avx512_bf16 or AMX). fp16 needs a grad scaler, which only
CUDA provides, so it stays CUDA-only.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from ..errors import GSAMError

AMP_MODES = ("off", "bf16", "fp16")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(amp: str, device: torch.device, flag: str = "--amp") -> None:
    """A clear one-line error for an unknown mode or one the device cannot run."""
    if amp not in AMP_MODES:
        raise GSAMError(f"{flag} must be one of {', '.join(AMP_MODES)}; got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise GSAMError(f"{flag} fp16 needs a CUDA device (its grad scaler is CUDA-only); "
                        f"this run is on {device.type}: use {flag} bf16 instead")


def autocast(device: torch.device, amp: str):
    """The autocast context for `amp` on `device` (a no-op context for "off")."""
    if amp == "off":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """Enabled for fp16 only; bf16 has fp32's exponent range and needs no loss scaling."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")
