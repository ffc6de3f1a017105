"""Read and write the model facts a gsam ONNX file carries in its metadata_props."""

from __future__ import annotations

from pathlib import Path

import onnx

from gsam.errors import GSAMError
from gsam.model.facts import ModelFacts

PRODUCER = "gsam"
OUTPUTS_DESCRIPTION = "logits: float32 [N, C, H, W]; mask: int32 [N, H, W] (argmax, or sigmoid > 0.5 when C = 1)"


def io_description(facts: ModelFacts) -> dict[str, str]:
    """The I/O contract in words, for readers of the file's metadata."""
    return {"input": f"image: {facts.input_dtype} [N, 3, H, W], RGB 0..255; H, W >= min_size",
            "outputs": OUTPUTS_DESCRIPTION}


def onnx_metadata(path: str | Path) -> dict[str, str]:
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


def read_onnx_facts(path: str | Path) -> ModelFacts:
    return ModelFacts.from_metadata(onnx_metadata(path), source=str(path))


def write_facts(model: onnx.ModelProto, facts: ModelFacts) -> None:
    """Replace the model's metadata_props with `facts` (and the I/O description)."""
    del model.metadata_props[:]
    for key, value in (facts.to_metadata() | io_description(facts)).items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = PRODUCER


def rewrite_onnx_facts(path: str | Path, facts: ModelFacts) -> None:
    """Replace the facts stored in an ONNX file in place (its weights are not loaded)."""
    model = onnx.load(str(path), load_external_data=False)
    write_facts(model, facts)
    onnx.save(model, str(path))
