"""An engine's JSON sidecar (ENGINE.json): what a TensorRT plan cannot say about itself.

One type, written and read: the shape profiles the engine was built with (in order: Triton's
instance group and the runner address them by index), the TensorRT version that built it (a plan
only loads in that version, which picks the Triton container), the GPU it was built on (a plan
only runs on that GPU architecture, gpu.py), whether TF32 was allowed, and the model's facts with
the ONNX file's name and sha256 as lineage. An engine is written only together with its sidecar:
every command refuses an engine without one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsam import __version__
from gsam.errors import GSAMError
from gsam.io import staged_file, write_text_atomic
from gsam.model.facts import ModelFacts

from .gpu import GpuFacts
from .profiles import ShapeProfile


def sidecar_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".json")


@dataclass(frozen=True)
class EngineSidecar:
    profiles: tuple[ShapeProfile, ...]
    facts: ModelFacts  # precision = the engine's; lineage ends with the ONNX file it was built from
    tensorrt_version: str
    gsam_version: str = __version__
    gpu: GpuFacts | None = None  # the GPU it was built on (None: not recorded, e.g. an older sidecar)
    tf32: bool = False  # fp32 layers were allowed TF32 (an explicit build choice; off by default)

    @property
    def precision(self) -> str:
        return self.facts.precision

    def to_dict(self) -> dict[str, Any]:
        return {"gsam_version": self.gsam_version, "tensorrt_version": self.tensorrt_version,
                "precision": self.precision, "profiles": [p.to_dict() for p in self.profiles],
                "gpu": self.gpu.to_dict() if self.gpu else None, "tf32": self.tf32,
                "onnx": self.facts.lineage.get("onnx_file", ""), "onnx_sha256": self.facts.lineage.get("onnx_sha256", ""),
                "metadata": self.facts.to_metadata()}

    def write(self, engine: str | Path) -> Path:
        path = sidecar_path(engine)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def write_with_engine(self, engine: str | Path, data: bytes) -> None:
        """The engine's bytes and this sidecar, staged side by side in a fresh folder and moved in place
        together: if anything fails first, neither file reaches ENGINE's folder (earlier ones stay)."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        with staged_file(engine) as staged:
            staged.write_bytes(data)
            sidecar_path(staged).write_text(text)

    @classmethod
    def read(cls, engine: str | Path) -> "EngineSidecar":
        side = sidecar_path(engine)
        if not side.is_file():
            raise GSAMError(f"{side}: missing engine sidecar; build engines with `gsam export tensorrt`")
        try:
            data = json.loads(side.read_text())
            profiles = tuple(ShapeProfile.from_dict(p) for p in data["profiles"])
            facts = ModelFacts.from_metadata(data["metadata"], source=str(side))
            return cls(profiles, facts, str(data["tensorrt_version"]), str(data.get("gsam_version", "")),
                       gpu=GpuFacts.from_dict(data.get("gpu")), tf32=bool(data.get("tf32", False)))
        except GSAMError:
            raise
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise GSAMError(f"{side}: damaged engine sidecar ({type(exc).__name__}: {exc})") from None
