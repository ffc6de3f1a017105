"""Load SAM's official checkpoints into GSAM; save and load gsam's own checkpoints.

A gsam checkpoint carries its model config, so the file alone rebuilds the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import __version__
from ..artifacts import wrong_artifact
from ..errors import GSAMError
from ..io import atomic_path
from .config import GSAMConfig
from .gsam import GSAM

SAM_FILES = "sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth or sam_vit_h_4b8939.pth"
SAM_VARIANTS = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}
# SAM keys whose GSAM name differs (GSAM keeps only this tensor of the prompt encoder).
RENAMES = {"prompt_encoder.no_mask_embed.weight": "no_mask_embed.weight"}
GSAM_FORMAT = "gsam-checkpoint-v1"
# Output tokens that load from SAM only when the shapes agree (binary models).
_DECODER_TOKENS = ("mask_decoder.iou_token.weight", "mask_decoder.mask_tokens.weight")


class CheckpointError(GSAMError, ValueError):
    """A checkpoint file is missing, unreadable or does not fit the model."""


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    initialized: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"loaded {len(self.loaded)} tensors ({len(self.resized)} resized), "
                f"skipped {len(self.skipped)}, left {len(self.initialized)} at init")


def first_sentence(text: str, limit: int = 120) -> str:
    """The first line's first sentence of an exception text, for one-line errors."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.split(". ")[0].rstrip(".")[:limit]


def read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """torch.load a checkpoint safely (weights only), with a one-line error on failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        other = wrong_artifact(path, "a PyTorch checkpoint (a run directory, a gsam .pt or a SAM .pth)")
        if other:
            raise CheckpointError(other) from None
        reason = first_sentence(str(exc)) or type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason}); "
                              f"expected a SAM .pth ({SAM_FILES}) or a gsam .pt file") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a {type(data).__name__}, expected a dict of tensors")
    return data


def resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly interpolate a (L, C) relative-position table to (length, C)."""
    return F.interpolate(table.T[None].float(), size=length, mode="linear", align_corners=False)[0].T


def _sam_shape(state: dict[str, Any]) -> tuple[int, int]:
    dim = state["image_encoder.patch_embed.proj.weight"].shape[0]
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    return dim, depth


def load_sam_checkpoint(model: GSAM, path: str | os.PathLike) -> LoadReport:
    """Copy a SAM checkpoint's matching tensors into `model`.

    The absolute position embedding is dropped (the PEG replaces it), the global blocks'
    relative-position tables are resized to the configured crop's grid. A binary model
    takes SAM's IoU token and all four mask tokens; multi-class models have more tokens
    than SAM, so theirs keep their initialization (as the reference code does).
    The IoU head is skipped: GSAM does not build it.
    """
    state = read_state_dict(path)
    if "image_encoder.patch_embed.proj.weight" not in state:
        raise CheckpointError(f"{path}: not a SAM checkpoint (no image_encoder.patch_embed.proj.weight); "
                              f"expected {SAM_FILES}")
    config = model.config
    dim, depth = _sam_shape(state)
    if (dim, depth) != (config.embed_dim, config.depth):
        found = SAM_VARIANTS.get((dim, depth), "an unknown SAM size")
        raise CheckpointError(
            f"{path}: a SAM {found} checkpoint (embed dim {dim}, {depth} blocks) does not fit model "
            f"{config.name} (embed dim {config.embed_dim}, {config.depth} blocks); use --model {found}")

    target = model.state_dict()
    report, new_state = LoadReport(), {}
    for key, value in state.items():
        name = RENAMES.get(key, key)
        if name not in target or (name in _DECODER_TOKENS and config.num_classes > 1):
            report.skipped.append(key)
            continue
        want = target[name].shape
        if ".attn.rel_pos_" in name and value.shape != want and value.shape[1] == want[1]:
            value = resize_rel_pos(value, want[0])
            report.resized.append(name)
        if value.shape != want:
            raise CheckpointError(f"{path}: tensor {key} has shape {list(value.shape)}, model {config.name} "
                                  f"expects {list(want)}")
        new_state[name] = value
        report.loaded.append(name)
    report.initialized = [k for k in target if k not in new_state]
    model.load_state_dict(new_state, strict=False)
    return report


def save_gsam_checkpoint(path: str | os.PathLike, model: GSAM, **extra: Any) -> None:
    """Atomically write model weights, config and `extra` (optimizer, epoch, metrics...)."""
    payload = {"format": GSAM_FORMAT, "gsam_version": __version__, "config": model.config.to_dict(),
               "model": model.state_dict(), **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_gsam_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    data = read_state_dict(path)
    if data.get("format") != GSAM_FORMAT:
        hint = " (this is a SAM checkpoint: pass it to --sam-checkpoint)" if "image_encoder.patch_embed.proj.weight" in data else ""
        raise CheckpointError(f"{path}: not a gsam checkpoint (no 'format: {GSAM_FORMAT}' field){hint}")
    return data


def load_gsam_checkpoint(path: str | os.PathLike) -> tuple[GSAM, dict[str, Any]]:
    """Rebuild the model stored in a gsam checkpoint; returns (model in eval mode, payload)."""
    from . import build_gsam

    data = read_gsam_checkpoint(path)
    try:
        config = GSAMConfig.from_dict(data["config"])
        model = build_gsam(config)
        model.load_state_dict(data["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: damaged gsam checkpoint ({str(exc).splitlines()[0][:160]})") from None
    return model.eval(), data
