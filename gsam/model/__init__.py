"""GSAM in PyTorch: `build_gsam("vit_b", num_classes=5)` gives a model ready to fine-tune.

Importing this package costs no torch: the config registry (config.py), the model's facts
(facts.py) and the run-directory reader (run.py) serve torch-free callers such as `gsam info`
and the Triton client; the network's modules load when a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import GSAMConfig, get_config, model_names

if TYPE_CHECKING:
    from .gsam import GSAM


def build_gsam(config: str | GSAMConfig, **overrides: Any) -> "GSAM":
    """Build a GSAM from a registry name or a config, with only GSAM's new parts trainable."""
    from .gsam import GSAM
    from .trainable import apply_trainable_policy

    if isinstance(config, str):
        config = get_config(config, **overrides)
    elif overrides:
        config = config.replace(**overrides)
    model = GSAM(config)
    apply_trainable_policy(model)
    return model


__all__ = ["GSAMConfig", "build_gsam", "get_config", "model_names"]
