"""GSAM in PyTorch: `build_gsam("vit_b", num_classes=5)` gives a model ready to fine-tune."""

from __future__ import annotations

from typing import Any

from .config import GSAMConfig, get_config, model_names
from .gsam import GSAM, check_images
from .trainable import apply_trainable_policy, count_parameters


def build_gsam(config: str | GSAMConfig, **overrides: Any) -> GSAM:
    """Build a GSAM from a registry name or a config, with only GSAM's new parts trainable."""
    if isinstance(config, str):
        config = get_config(config, **overrides)
    elif overrides:
        config = config.replace(**overrides)
    model = GSAM(config)
    apply_trainable_policy(model)
    return model


__all__ = ["GSAM", "GSAMConfig", "build_gsam", "get_config", "model_names", "check_images",
           "apply_trainable_policy", "count_parameters"]
