"""The metadata a gsam ONNX model carries, so later stages need no flags."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from .. import __version__
from ..errors import GSAMError

PRODUCER = "gsam"


def model_metadata(config, palette=()) -> dict[str, str]:
    return {
        "gsam_version": __version__,
        "model_name": config.name,
        "num_classes": str(config.num_classes),
        "class_names": json.dumps(list(config.class_names)),
        "min_size": str(config.min_size),
        "token_stride": str(config.token_stride),
        "pad_multiple": str(config.pad_multiple),
        "palette": json.dumps([list(c) for c in palette]),
        "config": json.dumps(config.to_dict()),
        "input": "image: float32 [N, 3, H, W], RGB 0..255; H, W >= min_size",
        "outputs": "logits: float32 [N, C, H, W]; mask: int32 [N, H, W] (argmax, or sigmoid > 0.5 when C = 1)",
    }


def read_metadata(path: str | Path) -> dict[str, str]:
    """metadata_props of a gsam ONNX file, without loading its weights."""
    path = Path(path)
    if not path.is_file():
        raise GSAMError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise GSAMError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0][:160]})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if "gsam_version" not in props or [i.name for i in model.graph.input] != ["image"]:
        raise GSAMError(f"{path}: not a gsam ONNX model (expected input 'image' and gsam metadata; "
                        "export one with `gsam export onnx`)")
    return props


def read_model_info(path: str | Path):
    from ..runtime.backends import ModelInfo

    props = read_metadata(path)
    return ModelInfo(
        num_classes=int(props["num_classes"]),
        class_names=tuple(json.loads(props.get("class_names", "[]"))),
        min_size=int(props["min_size"]),
        palette=tuple(tuple(c) for c in json.loads(props.get("palette", "[]"))),
        extra=props,
    )
