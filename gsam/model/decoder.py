"""SAM's mask decoder without prompts, with the reference G-SAM decoder's output tokens."""

from __future__ import annotations

import torch
from segment_anything.modeling.mask_decoder import MLP
from segment_anything.modeling.transformer import TwoWayTransformer
from torch import Tensor, nn

from .layers import LayerNorm2d

# SAM's decoder has one single-mask token plus three multimask tokens.
SAM_MASK_TOKENS = 4


def token_counts(num_classes: int) -> tuple[int, int]:
    """(IoU tokens, mask tokens) of the decoder for `num_classes` logit channels.

    Binary (one channel): SAM's own set, 1 IoU token + 4 mask tokens, so all of them load
    from SAM. C classes: C IoU tokens and 4C + 1 mask tokens, as the reference code builds them.
    """
    if num_classes == 1:
        return 1, SAM_MASK_TOKENS
    return num_classes, SAM_MASK_TOKENS * num_classes + 1


class ConvPositionalEncoding(nn.Module):
    """Depthwise 3x3 conv over the image embedding, replacing SAM's fixed Fourier encoding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, embedding: Tensor) -> Tensor:
        return self.proj(embedding)


class ClassMaskDecoder(nn.Module):
    """Two-way transformer over the image embedding and the reference decoder's tokens.

    Every IoU and mask token enters the transformer: they attend to each other and to the
    image, so all of them shape the result and all of them train. Class i is read from
    transformer output 1 + i through hyper-MLP i (binary: output 1, SAM's single-mask token).
    The IoU head is not built: its prediction is never used. Returns low-resolution logits
    (B, num_classes, 4h, 4w). Parameter names match SAM's MaskDecoder so its weights load.
    """

    def __init__(self, dim: int, num_classes: int, depth: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.num_outputs = num_classes
        iou_tokens, mask_tokens = token_counts(num_classes)
        self.transformer = TwoWayTransformer(depth=depth, embedding_dim=dim, num_heads=num_heads, mlp_dim=mlp_dim)
        self.iou_token = nn.Embedding(iou_tokens, dim)
        self.mask_tokens = nn.Embedding(mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2), LayerNorm2d(dim // 4), nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2), nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(num_classes))

    def forward(self, embedding: Tensor, pos: Tensor, dense: Tensor) -> Tensor:
        batch, channels, h, w = embedding.shape
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        hs, src = self.transformer(embedding + dense, pos, tokens.unsqueeze(0).expand(batch, -1, -1))
        src = src.transpose(1, 2).reshape(batch, channels, h, w)
        upscaled = self.output_upscaling(src)
        hyper = torch.stack([mlp(hs[:, 1 + i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c, uh, uw = upscaled.shape
        return (hyper @ upscaled.reshape(b, c, uh * uw)).reshape(b, -1, uh, uw)
