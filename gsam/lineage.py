"""Where any gsam artifact came from: `gsam info ARTIFACT` for a run, .pt, .onnx, .plan or Triton model.

Each stage records its source in the facts map it writes (see gsam.facts), so reading one
artifact gives the whole chain back to the training checkpoint without opening the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import GSAMError
from .model.facts import ModelFacts


@dataclass
class Description:
    kind: str  # "run", "checkpoint", "onnx", "engine", "triton model"
    path: Path
    facts: ModelFacts
    details: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        f = self.facts
        names = ", ".join(f.class_names) if f.class_names else "unnamed"
        rows = [("artifact", f"{self.kind}: {self.path}"), *self.details,
                ("model", f"{f.model_name or '?'}, {f.num_classes} output channel(s) ({names})"),
                ("input", f"image {f.input_dtype} [N, 3, H, W], H and W >= {f.min_size}; token stride {f.token_stride}"),
                ("precision", f.precision)]
        rows += _gate(f.extra) + _chain(f.lineage)
        return [f"{key:<14} {value}" for key, value in rows]


def _gate(extra: dict[str, str]) -> list[tuple[str, str]]:
    """An fp16/int8 variant's export gate, as its metadata recorded it (what the variant was held to)."""
    if "gate_mask_agreement" not in extra:
        return []
    figures = [f"mask agreement {float(extra['gate_mask_agreement']):.2%} on {extra.get('gate_images', '?')} image(s)"]
    if "gate_unseen_agreement" in extra:
        figures.append(f"{float(extra['gate_unseen_agreement']):.2%} at unseen sizes")
    if "gate_miou_drop" in extra:
        figures.append(f"val mIoU {float(extra['gate_variant_miou']):.4f} against "
                       f"{float(extra['gate_reference_miou']):.4f} (drop {float(extra['gate_miou_drop']):.2f} points)")
    if "int8_scheme" in extra:
        figures.append(f"int8 scheme {extra['int8_scheme']}")
    return [("export gate", "; ".join(figures))]


def _chain(lineage: dict[str, str]) -> list[tuple[str, str]]:
    rows = []
    if "onnx_file" in lineage:
        rows.append(("built from", f"{lineage['onnx_file']} (sha256 {lineage.get('onnx_sha256', '?')})"))
    if "source_checkpoint" in lineage:
        trained = [f"sha256 {lineage.get('source_sha256', '?')}"]
        if "source_epoch" in lineage:
            trained.append(f"epoch {lineage['source_epoch']}")
        if "source_val_miou" in lineage:
            trained.append(f"val mIoU {lineage['source_val_miou']}")
        rows.append(("exported from", f"{lineage['source_checkpoint']} ({', '.join(trained)})"))
    return rows


def _describe_checkpoint(path: Path, kind: str) -> Description:
    from .model.run import trained_facts

    checkpoint, _, facts = trained_facts(path)
    lineage, facts = facts.lineage, replace(facts, lineage={})
    details = [("checkpoint", f"{checkpoint.name} (sha256 {lineage['source_sha256']})")]
    if "source_epoch" in lineage:
        details.append(("trained", f"epoch {lineage['source_epoch']}, val mIoU {lineage.get('source_val_miou', 'n/a')}"))
    return Description(kind, path, facts, details)


def _describe_onnx(path: Path) -> Description:
    from gsam.export.metadata import read_onnx_facts

    from .io import sha256_file

    return Description("onnx", path, read_onnx_facts(path), [("sha256", sha256_file(path))])


def _describe_engine(path: Path) -> Description:
    from gsam.export.sidecar import EngineSidecar

    sidecar = EngineSidecar.read(path)
    profiles = ", ".join(p.name for p in sidecar.profiles)
    return Description("engine", path, sidecar.facts,
                       [("tensorrt", f"{sidecar.tensorrt_version}, {sidecar.precision}"), ("profiles", profiles)])


def _describe_triton_model(path: Path) -> Description:
    from gsam.deploy.triton.repository import config_facts
    from gsam.runtime.serving.model_config import read_model_config

    config = read_model_config(path)
    runner = config.backend or config.platform
    return Description("triton model", path, config_facts(config, str(path / "config.pbtxt")),
                       [("triton", f"{config.name} ({runner}), versions {_versions(path)}"),
                        ("served inputs", ", ".join(f"{i.name} {mc_type(i.data_type)}" for i in config.input))])


def mc_type(data_type: int) -> str:
    """Triton's name of a config data type (TYPE_FP32 -> FP32)."""
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(data_type).removeprefix("TYPE_")


def _versions(model_dir: Path) -> str:
    found = sorted(p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    return ", ".join(found) or "none"


def describe(path: str | Path) -> list[Description]:
    """One description per artifact at `path` (a Triton repository gives one per model)."""
    path = Path(path)
    if not path.exists():
        raise GSAMError(f"{path}: no such run directory, checkpoint, ONNX file, engine or Triton model")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return [_describe_onnx(path)]
    if suffix in (".plan", ".engine"):
        return [_describe_engine(path)]
    if path.is_dir() and (path / "config.pbtxt").is_file():
        return [_describe_triton_model(path)]
    if path.is_dir() and any((p / "config.pbtxt").is_file() for p in path.iterdir() if p.is_dir()):
        return [_describe_triton_model(p) for p in sorted(path.iterdir()) if (p / "config.pbtxt").is_file()]
    return [_describe_checkpoint(path, "run" if path.is_dir() else "checkpoint")]
