"""What every stage after training needs to know about a model: one type, one encoding.

ONNX `metadata_props`, TensorRT engine sidecars and Triton model parameters all carry the
same flat string map (`ModelFacts.to_metadata`), and `ModelFacts.from_metadata` is the one
decoder, so a backend never needs flags the artifact could have told it. The map also holds
the artifact's lineage: the checkpoint (and its hash, epoch, validation mIoU) an ONNX file
came from, and the ONNX file (and its hash) an engine or a Triton model was built from.

Torch-free on purpose: the Triton client and `gsam info` import it without the model code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import GSAMError

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# Keys of the metadata map that record where an artifact came from, oldest first.
LINEAGE_KEYS = ("source_checkpoint", "source_sha256", "source_epoch", "source_val_miou",
                "onnx_file", "onnx_sha256")


class MetadataError(GSAMError, ValueError):
    """An artifact's metadata is missing a field or holds a malformed one."""


@dataclass(frozen=True)
class ModelFacts:
    num_classes: int
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    min_size: int = 32
    token_stride: int = 8
    pad_multiple: int = 8
    pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = SAM_PIXEL_STD
    precision: str = "fp32"
    model_name: str = ""
    gsam_version: str = ""
    config: dict[str, Any] = field(default_factory=dict, compare=False)  # the architecture, for FLOP counts
    lineage: dict[str, str] = field(default_factory=dict, compare=False)
    extra: dict[str, str] = field(default_factory=dict, compare=False)  # e.g. an export gate's figures

    @classmethod
    def from_config(cls, config, palette=(), precision: str = "fp32", lineage: dict[str, str] | None = None):
        """Facts of a GSAMConfig (a model about to be exported)."""
        from . import __version__

        return cls(num_classes=config.num_classes, class_names=tuple(config.class_names),
                   palette=tuple(tuple(int(v) for v in c) for c in palette), min_size=config.min_size,
                   token_stride=config.token_stride, pad_multiple=config.pad_multiple,
                   pixel_mean=tuple(config.pixel_mean), pixel_std=tuple(config.pixel_std), precision=precision,
                   model_name=config.name, gsam_version=__version__, config=config.to_dict(),
                   lineage=dict(lineage or {}))

    def to_metadata(self) -> dict[str, str]:
        """The flat string map stored in ONNX metadata, engine sidecars and Triton parameters."""
        values = {
            "gsam_version": self.gsam_version, "model_name": self.model_name,
            "num_classes": str(self.num_classes), "class_names": json.dumps(list(self.class_names)),
            "palette": json.dumps([list(c) for c in self.palette]), "min_size": str(self.min_size),
            "token_stride": str(self.token_stride), "pad_multiple": str(self.pad_multiple),
            "pixel_mean": json.dumps(list(self.pixel_mean)), "pixel_std": json.dumps(list(self.pixel_std)),
            "precision": self.precision,
        }
        if self.config:
            values["config"] = json.dumps(self.config)
        return values | {k: str(v) for k, v in self.lineage.items()} | dict(self.extra)

    @classmethod
    def from_metadata(cls, values: dict[str, str], source: str = "metadata") -> "ModelFacts":
        """Decode the map; `source` names the artifact in errors."""
        if "num_classes" not in values:
            raise MetadataError(f"{source}: no gsam model metadata (field 'num_classes' is missing)")
        known = {"gsam_version", "model_name", "num_classes", "class_names", "palette", "min_size", "token_stride",
                 "pad_multiple", "pixel_mean", "pixel_std", "precision", "config", *LINEAGE_KEYS}

        def read(key: str, parse, default):
            if key not in values or values[key] == "":
                return default
            try:
                return parse(values[key])
            except (ValueError, TypeError):
                raise MetadataError(f"{source}: metadata field {key!r} is malformed ({values[key][:60]!r})") from None

        precision = read("precision", str, "fp32")
        if precision not in PRECISIONS:
            raise MetadataError(f"{source}: metadata field 'precision' is {precision!r}; expected one of "
                                f"{', '.join(PRECISIONS)}")
        return cls(
            num_classes=read("num_classes", int, 1),
            class_names=tuple(read("class_names", json.loads, [])),
            palette=tuple(tuple(int(v) for v in c) for c in read("palette", json.loads, [])),
            min_size=read("min_size", int, 32), token_stride=read("token_stride", int, 8),
            pad_multiple=read("pad_multiple", int, 8),
            pixel_mean=tuple(read("pixel_mean", json.loads, SAM_PIXEL_MEAN)),
            pixel_std=tuple(read("pixel_std", json.loads, SAM_PIXEL_STD)),
            precision=precision, model_name=values.get("model_name", ""),
            gsam_version=values.get("gsam_version", ""), config=read("config", json.loads, {}),
            lineage={k: values[k] for k in LINEAGE_KEYS if k in values},
            extra={k: v for k, v in values.items() if k not in known},
        )

    def with_lineage(self, **entries: Any) -> "ModelFacts":
        return ModelFacts(**{**self.__dict__, "lineage": {**self.lineage, **{k: str(v) for k, v in entries.items()}}})

    def with_extra(self, **entries: Any) -> "ModelFacts":
        return ModelFacts(**{**self.__dict__, "extra": {**self.extra, **{k: str(v) for k, v in entries.items()}}})
