"""GSAM's image encoder: SAM's ViT with a stride-8 patch embedding, a CNN branch,
an input adapter, a positional encoding generator (PEG) and pooled attention."""

from __future__ import annotations

import torch.nn.functional as F
from segment_anything.modeling.common import MLPBlock
from torch import Tensor, nn

from .adapters import InputAdapter, MultiScaleAdaptFormer, RefineAdapter
from .attention import PooledAttention
from .cnn import CNNBranch
from .config import GSAMConfig
from .layers import LayerNorm2d


class StridedPatchEmbed(nn.Module):
    """SAM's 16x16 patch convolution applied with stride `stride`.

    The input is first enlarged by 16 - stride pixels so a (H, W) input, H and W multiples
    of the stride, gives exactly (H / stride, W / stride) tokens. At stride 16 this is SAM's.
    """

    def __init__(self, dim: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.proj = nn.Conv2d(3, dim, kernel_size=16, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        grow = 16 - self.stride
        if grow:
            x = F.interpolate(x, size=(x.shape[2] + grow, x.shape[3] + grow), mode="bilinear", align_corners=False)
        return self.proj(x).permute(0, 2, 3, 1)


class PositionalEncodingGenerator(nn.Module):
    """Depthwise 3x3 conv over the token grid: a position signal that works at any size."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class GSAMBlock(nn.Module):
    """SAM's ViT block with pooled attention, a multiscale AdaptFormer beside the MLP and,
    in global blocks, a refine adapter on the CNN features."""

    def __init__(self, config: GSAMConfig, is_global: bool) -> None:
        super().__init__()
        dim = config.embed_dim
        if is_global:
            rel_pos_size = tuple(s // config.token_stride for s in config.train_size)
        else:
            rel_pos_size = (config.window_size, config.window_size)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = PooledAttention(dim, config.num_heads, rel_pos_size, pooled_grid=config.pooled_grid,
                                    window_size=0 if is_global else config.window_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * config.mlp_ratio))
        self.mlp_adapter = MultiScaleAdaptFormer(dim, config.adapter_ratio, config.adaptformer_dilations)
        self.refine_adapter = RefineAdapter(dim) if is_global else None

    def forward(self, x: Tensor, cnn: Tensor) -> tuple[Tensor, Tensor]:
        x = x + self.attn(self.norm1(x))
        xn = self.norm2(x)
        x = x + self.mlp(xn) + 0.5 * self.mlp_adapter(xn)
        if self.refine_adapter is not None:
            cnn = self.refine_adapter(cnn)
        return x, cnn


class ImageEncoder(nn.Module):
    """Normalized, padded images (B, 3, H, W) -> embeddings (B, decoder_dim, H/s, W/s)."""

    def __init__(self, config: GSAMConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.token_stride = config.token_stride
        self.patch_embed = StridedPatchEmbed(dim, config.token_stride)
        self.cnn_embed = CNNBranch(config.cnn, dim, pretrained=config.cnn_pretrained)
        self.input_adapter = InputAdapter(dim, config.adapter_ratio)
        self.peg = PositionalEncodingGenerator(dim)
        self.blocks = nn.ModuleList(
            GSAMBlock(config, is_global=i in config.global_attn_indexes) for i in range(config.depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(dim, config.decoder_dim, 1, bias=False), LayerNorm2d(config.decoder_dim),
            nn.Conv2d(config.decoder_dim, config.decoder_dim, 3, padding=1, bias=False),
            LayerNorm2d(config.decoder_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        cnn = self.cnn_embed(x)
        tokens = self.input_adapter(self.patch_embed(x))
        if self.token_stride != CNNBranch.stride:
            cnn = F.interpolate(cnn, size=(tokens.shape[1], tokens.shape[2]))
        x = tokens + cnn.permute(0, 2, 3, 1)
        for i, block in enumerate(self.blocks):
            x, cnn = block(x, cnn)
            if i == 0:
                x = x + self.peg(x)
        x = x + 0.5 * cnn.permute(0, 2, 3, 1)
        return self.neck(x.permute(0, 3, 1, 2))
