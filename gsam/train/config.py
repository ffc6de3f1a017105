"""Training settings: defaults follow the paper (Adam 1e-4, cosine, 200 epochs, batch 8)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import GSAMError


@dataclass
class TrainConfig:
    data: str
    out: str
    model: str = "vit_b"
    sam_checkpoint: str | None = None
    num_classes: int | None = None  # logit channels; default 1 for binary datasets, else the class count
    crop: tuple[int, int] | None = None  # default: the model's train_size
    epochs: int = 200
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    device: str = "auto"
    amp: str = "auto"  # auto: bf16 where measured faster on the device, else fp32 (gsam.amp)
    workers: int = 2
    seed: int = 0
    val_every: int = 1
    steps_per_epoch: int | None = None  # cap on optimizer steps per epoch (quick runs); None = whole split
    token_stride: int = 8
    cnn: str | None = None
    cnn_pretrained: bool = False
    accumulate: int = 1  # micro-batches per optimizer step: effective batch = batch_size x accumulate x world size
    resize: tuple[int, int] | None = None  # resize every image (train and val) to HxW first, as the reference does
    recipe: str | None = None  # the per-dataset preset these settings came from (gsam.train.recipes)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GSAMError(f"{source}: unknown field {unknown[0]!r}; expected one of {', '.join(sorted(known))}")
        for key in ("crop", "resize"):
            if data.get(key) is not None:
                size = data[key]
                data = {**data, key: (size, size) if isinstance(size, int) else tuple(size)}
        if not isinstance(data.get("accumulate", 1), int) or data.get("accumulate", 1) < 1:
            raise GSAMError(f"{source}: field 'accumulate' must be an integer >= 1, got {data['accumulate']!r}")
        return cls(**data)


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    """A --config file: a YAML mapping of TrainConfig fields (dashes or underscores), as `gsam train
    --print-config` writes it, or a run's config.yaml, whose `train` section is that mapping."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise GSAMError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise GSAMError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GSAMError(f"{path}: expected a mapping of training settings, got {type(data).__name__}")
    if isinstance(data.get("train"), dict) and "gsam_version" in data:
        data = data["train"]  # a run's own config.yaml: its train section holds the settings
    return {str(k).replace("-", "_"): v for k, v in data.items()}
