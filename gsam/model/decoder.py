"""SAM's mask decoder without prompts: one mask token per output class."""

from __future__ import annotations

import torch
from segment_anything.modeling.mask_decoder import MLP
from segment_anything.modeling.transformer import TwoWayTransformer
from torch import Tensor, nn

from .layers import LayerNorm2d


class ConvPositionalEncoding(nn.Module):
    """Depthwise 3x3 conv over the image embedding, replacing SAM's fixed Fourier encoding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, embedding: Tensor) -> Tensor:
        return self.proj(embedding)


class ClassMaskDecoder(nn.Module):
    """Two-way transformer over the image embedding and one learned token per class.

    Returns low-resolution logits (B, num_outputs, 4h, 4w). There is no IoU token or head:
    nothing would train them. Parameter names match SAM's MaskDecoder so its weights load.
    """

    def __init__(self, dim: int, num_outputs: int, depth: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(depth=depth, embedding_dim=dim, num_heads=num_heads, mlp_dim=mlp_dim)
        self.mask_tokens = nn.Embedding(num_outputs, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2), LayerNorm2d(dim // 4), nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2), nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(num_outputs))

    def forward(self, embedding: Tensor, pos: Tensor, dense: Tensor) -> Tensor:
        batch, channels, h, w = embedding.shape
        tokens = self.mask_tokens.weight.unsqueeze(0).expand(batch, -1, -1)
        hs, src = self.transformer(embedding + dense, pos, tokens)
        src = src.transpose(1, 2).reshape(batch, channels, h, w)
        upscaled = self.output_upscaling(src)
        hyper = torch.stack([mlp(hs[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c, uh, uw = upscaled.shape
        return (hyper @ upscaled.reshape(b, c, uh * uw)).reshape(b, -1, uh, uw)
