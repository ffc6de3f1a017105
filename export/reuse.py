"""A verified fp32 export used again instead of exporting the checkpoint a second time.

The dynamo export of vit_b takes minutes; `gsam deploy --onnx` (and the variants made from it) take an
existing `gsam export onnx` file instead, once its lineage proves it was exported from the very checkpoint
the run holds (its sha256), so a deploy folder never mixes a model with another run's export.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx

from gsam.errors import GSAMError
from gsam.io import sha256_file
from gsam.model.facts import ModelFacts
from gsam.model.run import resolve_checkpoint

from .metadata import read_onnx_facts


def check_fp32_export_of(run: str | Path, onnx_path: str | Path) -> ModelFacts:
    """The facts of `onnx_path`, or a one-line error unless it is the fp32 export of `run`'s checkpoint."""
    onnx_path, checkpoint = Path(onnx_path), resolve_checkpoint(run)
    facts = read_onnx_facts(onnx_path)
    if facts.precision != "fp32":
        raise GSAMError(f"{onnx_path}: a {facts.precision} file; give the verified fp32 export "
                        f"(gsam export onnx {run} --out model.onnx)")
    exported_from, want = facts.lineage.get("source_sha256"), sha256_file(checkpoint)
    if exported_from != want:
        source = facts.lineage.get("source_checkpoint", "an unrecorded checkpoint")
        raise GSAMError(f"{onnx_path}: exported from {source} (sha256 {str(exported_from)[:12]}), not from "
                        f"{checkpoint} (sha256 {want[:12]}): export it again with gsam export onnx {run}")
    return facts


def copy_onnx(source: Path, target: Path) -> None:
    """Copy an ONNX file with the external weight files it references (models over 2 GB keep them apart)."""
    shutil.copyfile(source, target)
    model = onnx.load(str(source), load_external_data=False)
    locations = {entry.value for tensor in model.graph.initializer for entry in tensor.external_data
                 if entry.key == "location"}
    for location in locations:
        shutil.copyfile(source.parent / location, target.parent / location)
