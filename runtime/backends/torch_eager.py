"""A gsam checkpoint or run directory, in PyTorch eager mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gsam.model.run import load_trained
from gsam.model.segmenter import Segmenter


class TorchSegmenter(Segmenter):
    """`amp` "bf16" (CPU or CUDA) or "fp16" (CUDA) runs the forward pass under autocast; "auto" (the default)
    picks bf16 only where it is measured faster on this device (gsam.amp.choose_amp)."""

    name = "torch"

    def __init__(self, path: str | Path, device: str = "cpu", amp: str = "auto") -> None:
        import torch

        from gsam.amp import choose_amp
        from gsam.device import resolve_device

        self.torch = torch
        self.device = resolve_device(device)
        self.amp_choice = choose_amp(amp, self.device)
        self.amp = self.amp_choice.mode
        self.model, self.facts = load_trained(path)
        self.model.to(self.device)

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        from gsam.amp import autocast

        torch = self.torch
        with torch.inference_mode(), autocast(self.device, self.amp):
            logits = self.model(torch.from_numpy(images).to(self.device))
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        return {"logits": logits.float().cpu().numpy()}
