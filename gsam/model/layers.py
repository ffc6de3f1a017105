"""Layers shared by the encoder, the adapters and the decoder.

`LayerNorm2d` normalizes the channels of an NCHW tensor like segment_anything's (same
parameter names `weight`, `bias` and eps, so SAM checkpoints load unchanged), but is written
as channels-last `F.layer_norm`: both ONNX exporters then emit one `LayerNormalization` node
instead of a Sub/Pow/ReduceMean/Sqrt/Div chain. TensorRT computes that node in fp32 even
in reduced-precision engines, where the chain's Pow overflows in fp16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of (N, C, H, W)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
