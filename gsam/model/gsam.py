"""GSAM: RGB images of any size in, per-class logits at the same size out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import GSAMConfig
from .decoder import ClassMaskDecoder, ConvPositionalEncoding
from .encoder import ImageEncoder


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def check_images(images: Tensor, min_size: int) -> None:
    """Raise ValueError naming the problem when `images` is not float RGB [N, 3, H, W] >= min_size."""
    if not isinstance(images, Tensor):
        raise ValueError(f"images must be a torch.Tensor [N, 3, H, W]; got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape [N, 3, H, W]; got {list(images.shape)}")
    if images.shape[1] != 3:
        raise ValueError(f"images must have 3 (RGB) channels; got {images.shape[1]} in shape {list(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a float tensor with values in 0..255; got dtype {images.dtype}")
    h, w = images.shape[2], images.shape[3]
    if h < min_size or w < min_size:
        raise ValueError(f"images must be at least {min_size}x{min_size} pixels; got {h}x{w}")


class GSAM(nn.Module):
    """Generalized SAM for semantic segmentation at native resolution.

    forward(images): float RGB in 0..255, [N, 3, H, W] with H, W >= config.min_size ->
    logits [N, num_classes, H, W]. Normalization, padding to the stride and cropping back
    happen here, with no Python branch on sizes, so the module exports with dynamic H, W.
    """

    def __init__(self, config: GSAMConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.decoder_dim
        self.image_encoder = ImageEncoder(config)
        self.no_mask_embed = nn.Embedding(1, dim)
        self.pos_encoder = ConvPositionalEncoding(dim)
        self.mask_decoder = ClassMaskDecoder(dim, config.num_classes, config.decoder_depth,
                                             config.decoder_heads, config.decoder_mlp_dim)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        if not _exporting():
            check_images(images, self.config.min_size)
        height, width = images.shape[2], images.shape[3]
        x = (images - self.pixel_mean) / self.pixel_std
        m = self.config.pad_multiple
        x = F.pad(x, (0, (m - width % m) % m, 0, (m - height % m) % m))
        embedding = self.image_encoder(x)
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand_as(embedding)
        low_res = self.mask_decoder(embedding, self.pos_encoder(embedding), dense)
        logits = F.interpolate(low_res, size=(x.shape[2], x.shape[3]), mode="bilinear", align_corners=False)
        return logits[:, :, :height, :width]

    def predict_mask(self, logits: Tensor) -> Tensor:
        """Class ids [N, H, W]: argmax, or sigmoid > 0.5 for one-channel binary models."""
        if logits.shape[1] == 1:
            return (logits[:, 0] > 0).to(torch.int32)
        return logits.argmax(dim=1).to(torch.int32)
