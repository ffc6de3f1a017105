"""Segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy."""

from __future__ import annotations

import torch
from torch import Tensor


class ConfusionMatrix:
    """Accumulates (target, prediction) pixel counts over all classes, background included."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, prediction: Tensor, target: Tensor, ignore_index: int) -> None:
        k = self.num_classes
        valid = (target >= 0) & (target < k) & (target != ignore_index)
        index = target[valid].to(torch.int64) * k + prediction[valid].to(torch.int64)
        self.matrix += torch.bincount(index.cpu(), minlength=k * k).reshape(k, k)

    def compute(self) -> dict:
        m = self.matrix.double()
        true_positive = m.diag()
        union = m.sum(0) + m.sum(1) - true_positive
        iou = torch.where(union > 0, true_positive / union.clamp(min=1), torch.full_like(union, float("nan")))
        return {
            "miou": float(torch.nanmean(iou)) if torch.isfinite(iou).any() else 0.0,
            "pixel_acc": float(true_positive.sum() / m.sum().clamp(min=1)),
            "iou": [None if torch.isnan(v) else float(v) for v in iou],
        }
