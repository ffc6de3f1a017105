"""What every stage after training knows about a model: its GSAMConfig plus what deploying adds.

ONNX `metadata_props`, TensorRT engine sidecars and Triton model parameters all carry the
same flat string map (`ModelFacts.to_metadata`), and `ModelFacts.from_metadata` is the one
decoder, so a backend never needs flags the artifact could have told it. The architecture
(class count and names, normalization, token stride, minimum size) is the model's own
GSAMConfig, stored whole as JSON; its most used fields are also written as plain keys for
readers outside gsam (the Triton python models read `min_size`). The map also holds the
artifact's lineage: the checkpoint (and its hash, epoch, validation mIoU) an ONNX file came
from, and the ONNX file (and its hash) an engine or a Triton model was built from.

Torch-free on purpose: the Triton client and `gsam info` import it without the model code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from ..data.palette import default_palette
from ..errors import GSAMError
from ..precisions import PRECISIONS
from .config import GSAMConfig

# What the `image` input of an exported model takes: RGB 0..255 as float32, or as uint8 (1 byte per
# channel on the wire; the cast and the normalization are inside the graph).
INPUT_DTYPES = ("float32", "uint8")
# Keys of the metadata map that record where an artifact came from, oldest first.
LINEAGE_KEYS = ("source_checkpoint", "source_sha256", "source_epoch", "source_val_miou",
                "onnx_file", "onnx_sha256")
# Plain copies of config fields, for readers that cannot parse the config (written, never read back).
_PLAIN_KEYS = ("model_name", "num_classes", "class_names", "min_size", "token_stride", "pad_multiple",
               "pixel_mean", "pixel_std")


class MetadataError(GSAMError, ValueError):
    """An artifact's metadata is missing a field or holds a malformed one."""


@dataclass(frozen=True)
class ModelFacts:
    config: GSAMConfig
    palette: tuple[tuple[int, int, int], ...] = ()  # from the dataset's classes.yaml; empty: gsam's default
    precision: str = "fp32"  # of the artifact (PRECISIONS)
    gsam_version: str = ""
    input_dtype: str = "float32"  # INPUT_DTYPES: the `image` input's type in an exported model
    lineage: dict[str, str] = field(default_factory=dict, compare=False)
    extra: dict[str, str] = field(default_factory=dict, compare=False)  # e.g. an export gate's figures

    num_classes = property(lambda self: self.config.num_classes)
    class_names = property(lambda self: self.config.class_names)
    min_size = property(lambda self: self.config.min_size)
    token_stride = property(lambda self: self.config.token_stride)
    model_name = property(lambda self: self.config.name)

    @property
    def colours(self) -> list[tuple[int, int, int]]:
        """The palette masks and overlays are drawn with: the model's, else gsam's default for its classes."""
        return list(self.palette) or default_palette(max(self.num_classes, 2))

    def to_metadata(self) -> dict[str, str]:
        """The flat string map stored in ONNX metadata, engine sidecars and Triton parameters."""
        c = self.config
        plain = {"model_name": c.name, "num_classes": str(c.num_classes), "class_names": json.dumps(list(c.class_names)),
                 "min_size": str(c.min_size), "token_stride": str(c.token_stride), "pad_multiple": str(c.pad_multiple),
                 "pixel_mean": json.dumps(list(c.pixel_mean)), "pixel_std": json.dumps(list(c.pixel_std))}
        values = {"gsam_version": self.gsam_version, **plain, "palette": json.dumps([list(p) for p in self.palette]),
                  "precision": self.precision, "input_dtype": self.input_dtype, "config": json.dumps(c.to_dict())}
        return values | {k: str(v) for k, v in self.lineage.items()} | dict(self.extra)

    @classmethod
    def from_metadata(cls, values: dict[str, str], source: str = "metadata") -> "ModelFacts":
        """Decode the map; `source` names the artifact in errors."""
        if "config" not in values:
            raise MetadataError(f"{source}: no gsam model metadata (field 'config' is missing)")
        try:
            config = GSAMConfig.from_dict(json.loads(values["config"]))
            palette = tuple(tuple(int(v) for v in c) for c in json.loads(values.get("palette") or "[]"))
        except (ValueError, TypeError) as exc:
            raise MetadataError(f"{source}: metadata field 'config' or 'palette' is malformed "
                                f"({str(exc).splitlines()[0][:100]})") from None
        precision = values.get("precision") or "fp32"
        if precision not in PRECISIONS or not PRECISIONS[precision].onnx:
            raise MetadataError(f"{source}: metadata field 'precision' is {precision!r}; expected one of "
                                f"{', '.join(p for p, row in PRECISIONS.items() if row.onnx)}")
        input_dtype = values.get("input_dtype") or "float32"
        if input_dtype not in INPUT_DTYPES:
            raise MetadataError(f"{source}: metadata field 'input_dtype' is {input_dtype!r}; expected one of "
                                f"{', '.join(INPUT_DTYPES)}")
        known = {"gsam_version", "palette", "precision", "input_dtype", "config", *_PLAIN_KEYS, *LINEAGE_KEYS}
        return cls(config, palette, precision, values.get("gsam_version", ""), input_dtype,
                   lineage={k: values[k] for k in LINEAGE_KEYS if k in values},
                   extra={k: v for k, v in values.items() if k not in known})

    def with_lineage(self, **entries: Any) -> "ModelFacts":
        return replace(self, lineage={**self.lineage, **{k: str(v) for k, v in entries.items()}})

    def with_extra(self, **entries: Any) -> "ModelFacts":
        return replace(self, extra={**self.extra, **{k: str(v) for k, v in entries.items()}})
