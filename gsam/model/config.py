"""Model settings and the registry of named configurations.

A `GSAMConfig` holds everything needed to rebuild a model, so it travels inside
checkpoints and run directories; deployment settings (profiles, precision) live
elsewhere, as in mmdeploy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
# Output channels of ResNet layer3, the deepest stage the CNN branch uses. resnet18-w16 is ResNet-18 at a quarter
# of its width (16 channels after the stem instead of 64), the tiny model's: a full-width ResNet-18 was 93% of
# the tiny model's FLOPs, so every test, the demo and CI paid for a CNN far wider than the toy ViT beside it.
CNN_CHANNELS = {"resnet18-w16": 64, "resnet18": 256, "resnet50": 1024, "resnet101": 1024}


@dataclass(frozen=True)
class GSAMConfig:
    """Architecture of one GSAM model (a ViT encoder size plus GSAM's parts)."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    mlp_ratio: float = 4.0
    # Pixels per token. 8 is the paper's grid; 16 is SAM's grid at a quarter of the cost.
    token_stride: int = 8
    # Crop size the global blocks' relative-position tables are sized for (2 * tokens - 1).
    train_size: tuple[int, int] = (256, 256)
    cnn: str = "resnet101"
    cnn_pretrained: bool = False
    pooled_grid: int = 3
    adapter_ratio: float = 0.25
    adaptformer_dilations: tuple[int, ...] = (12, 24, 36)
    decoder_dim: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    # Logit channels: 1 means a binary model read with sigmoid > 0.5, otherwise one per class.
    num_classes: int = 1
    class_names: tuple[str, ...] = ()
    pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = SAM_PIXEL_STD

    def __post_init__(self) -> None:
        if self.cnn not in CNN_CHANNELS:
            raise ValueError(f"cnn must be one of {sorted(CNN_CHANNELS)}; got {self.cnn!r}")
        if self.token_stride not in (8, 16):
            raise ValueError(f"token_stride must be 8 or 16; got {self.token_stride}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1; got {self.num_classes}")
        if any(i < 0 or i >= self.depth for i in self.global_attn_indexes):
            raise ValueError(f"global_attn_indexes {self.global_attn_indexes} out of range for depth {self.depth}")
        for name in ("train_size", "global_attn_indexes", "adaptformer_dilations", "class_names",
                     "pixel_mean", "pixel_std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def min_size(self) -> int:
        """Smallest input side: the token grid must hold the 3x3 pooled key grid."""
        return max(32, self.pooled_grid * self.token_stride)

    @property
    def pad_multiple(self) -> int:
        """Inputs are padded to this multiple inside forward (the CNN branch runs at stride 8)."""
        return max(8, self.token_stride)

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        m, s = self.pad_multiple, self.token_stride
        return (-(-height // m) * m // s, -(-width // m) * m // s)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GSAMConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config fields: {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "GSAMConfig":
        return dataclasses.replace(self, **changes)


_REGISTRY: dict[str, Callable[[], GSAMConfig]] = {}


def register(name: str) -> Callable[[Callable[[], GSAMConfig]], Callable[[], GSAMConfig]]:
    def wrap(builder: Callable[[], GSAMConfig]) -> Callable[[], GSAMConfig]:
        _REGISTRY[name] = builder
        return builder

    return wrap


@register("vit_b")
def _vit_b() -> GSAMConfig:
    return GSAMConfig("vit_b", embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11))


@register("vit_l")
def _vit_l() -> GSAMConfig:
    return GSAMConfig("vit_l", embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23))


@register("vit_h")
def _vit_h() -> GSAMConfig:
    return GSAMConfig("vit_h", embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31))


@register("tiny")
def _tiny() -> GSAMConfig:
    """Every GSAM part at toy width: for tests, the demo and CI on a CPU."""
    return GSAMConfig(
        "tiny", embed_dim=64, depth=4, num_heads=2, global_attn_indexes=(1, 3), window_size=7,
        train_size=(128, 128), cnn="resnet18-w16", adaptformer_dilations=(2, 4, 6),
        decoder_dim=32, decoder_depth=1, decoder_heads=2, decoder_mlp_dim=64,
    )


def model_names() -> list[str]:
    return list(_REGISTRY)


def get_config(name: str, **overrides: Any) -> GSAMConfig:
    """The registered config `name` with `overrides` applied (e.g. num_classes=5)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]().replace(**overrides)
