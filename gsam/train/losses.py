"""Losses of the paper's recipe: BCE-with-logits for one-channel binary models,
cross-entropy with an ignore index otherwise."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SegmentationLoss(nn.Module):
    def __init__(self, num_outputs: int, ignore_index: int) -> None:
        super().__init__()
        self.num_outputs = num_outputs
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.num_outputs == 1:
            valid = (target != self.ignore_index).float()
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], (target == 1).float(), reduction="none")
            return (loss * valid).sum() / valid.sum().clamp(min=1.0)
        return F.cross_entropy(logits, target, ignore_index=self.ignore_index)
