"""A gsam checkpoint or run directory, in PyTorch eager mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...facts import ModelFacts
from .base import Segmenter


class TorchSegmenter(Segmenter):
    """`amp` "bf16" (CPU or CUDA) or "fp16" (CUDA) runs the forward pass under autocast."""

    name = "torch"

    def __init__(self, path: str | Path, device: str = "cpu", amp: str = "off") -> None:
        import torch

        from ...device import resolve_device
        from ...model.checkpoint import load_gsam_checkpoint
        from ...train.amp import check_amp
        from ...train.run_dir import resolve_checkpoint

        self.torch = torch
        self.device = resolve_device(device)
        check_amp(amp, self.device)
        self.amp = amp
        self.model, payload = load_gsam_checkpoint(resolve_checkpoint(path))
        self.model.to(self.device)
        self.facts = ModelFacts.from_config(self.model.config, payload.get("classes", {}).get("palette", ()))

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        from ...train.amp import autocast

        torch = self.torch
        with torch.inference_mode(), autocast(self.device, self.amp):
            logits = self.model(torch.from_numpy(images).to(self.device))
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        return {"logits": logits.float().cpu().numpy()}
