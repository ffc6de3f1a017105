"""Which parameters fine-tune: GSAM's new parts; SAM's ViT and prompt embedding stay frozen."""

from __future__ import annotations

from torch import nn

# Prefixes (within GSAM's state dict) of the parts that train. The PEG trains here
# (the reference code's name filter misses it and leaves it at random init; docs/deviations.md).
_TRAINABLE_PREFIXES = (
    "image_encoder.cnn_embed.",
    "image_encoder.input_adapter.",
    "image_encoder.peg.",
    "mask_decoder.",
    "pos_encoder.",
)
_TRAINABLE_IN_BLOCKS = (".mlp_adapter.", ".refine_adapter.")


def is_trainable(name: str, global_blocks: tuple[int, ...]) -> bool:
    if name.startswith(_TRAINABLE_PREFIXES) or any(part in name for part in _TRAINABLE_IN_BLOCKS):
        return True
    # Relative-position tables of the global blocks are resized for the crop, so they retrain.
    return any(name in (f"image_encoder.blocks.{i}.attn.rel_pos_h", f"image_encoder.blocks.{i}.attn.rel_pos_w")
               for i in global_blocks)


def apply_trainable_policy(model: nn.Module) -> None:
    """Set requires_grad on every parameter of a GSAM model by the policy above."""
    for name, param in model.named_parameters():
        param.requires_grad_(is_trainable(name, model.config.global_attn_indexes))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
