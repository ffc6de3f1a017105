"""A gsam checkpoint or run directory, in PyTorch eager mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...facts import ModelFacts
from .base import Segmenter


class TorchSegmenter(Segmenter):
    name = "torch"

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import torch

        from ...model.checkpoint import load_gsam_checkpoint
        from ...train.run_dir import resolve_checkpoint
        from ...device import resolve_device

        self.torch = torch
        self.device = resolve_device(device)
        self.model, payload = load_gsam_checkpoint(resolve_checkpoint(path))
        self.model.to(self.device)
        self.facts = ModelFacts.from_config(self.model.config, payload.get("classes", {}).get("palette", ()))

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(images).to(self.device))
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        return {"logits": logits.float().cpu().numpy()}
