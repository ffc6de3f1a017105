"""Import checkpoints written by the official G-SAM training script into gsam runs.

The reference saves `model.state_dict()` of its GSAM (often wrapped in DataParallel, so
every key starts with `module.`). Its modules carry other names than ours, its ResNet
branch is registered twice (`cnn_embed.backbone.*` and the aliases `cnn_embed.conv1`,
`bn1`, `res2..res4`), and it stores parts its forward never calls (ResNet layer4 and fc,
the prompt encoder, the IoU head, the binary decoder's hyper-MLPs 1-3). This module maps
every key it knows onto ours and refuses anything else, naming the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

import torch

from ..io import sha256_file, staged_folder
from .checkpoint import CheckpointError, read_state_dict
from .config import GSAMConfig, get_config
from .decoder import token_counts

# The reference's data loader normalizes 0..1 images with these (its ExtNormalize).
REFERENCE_MEAN = (0.466, 0.471, 0.380)
REFERENCE_STD = (0.195, 0.194, 0.192)
NORMALIZATIONS = ("reference", "sam")
REFERENCE_MODELS = ("vit_b", "vit_l", "vit_h")
# The reference's global rel-pos tables have 2 * (s // (s // 32)) - 1 rows for input size s.
_TOKENS_PER_SIDE = 32

_MARKER = "image_encoder.cnn_embed.conv_f.weight"


class ReferenceImportError(CheckpointError):
    """A reference checkpoint does not fit the model it should become."""


def reference_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(pixel_mean, pixel_std) on the 0..255 scale our models take."""
    if name == "sam":
        config = get_config("vit_b")
        return config.pixel_mean, config.pixel_std
    if name == "reference":
        return tuple(round(255 * m, 6) for m in REFERENCE_MEAN), tuple(round(255 * s, 6) for s in REFERENCE_STD)
    raise ReferenceImportError(f"--normalize must be one of {', '.join(NORMALIZATIONS)}; got {name!r}")


def reference_rel_pos_tokens(train_size: int) -> int:
    """Tokens per side the reference sizes its global rel-pos tables for, given -encoder_input_size."""
    if train_size < _TOKENS_PER_SIDE:
        raise ReferenceImportError(f"--train-size must be at least {_TOKENS_PER_SIDE}; got {train_size}")
    return train_size // (train_size // _TOKENS_PER_SIDE)


def reference_config(model: str, num_classes: int, train_size: int = 256, normalize: str = "reference",
                     class_names: tuple[str, ...] = ()) -> GSAMConfig:
    """Our config for a reference model trained with `--num_classes num_classes` (2 = binary)."""
    if model not in REFERENCE_MODELS:
        raise ReferenceImportError(f"--model must be one of {', '.join(REFERENCE_MODELS)} (the reference's "
                                   f"--vit_name); got {model!r}")
    if num_classes < 2:
        raise ReferenceImportError(f"--classes is the reference's --num_classes (2 for binary data); "
                                   f"got {num_classes}")
    if class_names and len(class_names) != num_classes:
        raise ReferenceImportError(f"--class-names lists {len(class_names)} names; --classes is {num_classes}")
    base = get_config(model)
    mean, std = reference_normalization(normalize)
    # Our table rows are 2 * (train_size / stride) - 1: choose the size that gives the reference's rows.
    side = reference_rel_pos_tokens(train_size) * base.token_stride
    names = class_names or (("background", "foreground") if num_classes == 2
                            else tuple(f"class_{i}" for i in range(num_classes)))
    return base.replace(num_classes=1 if num_classes == 2 else num_classes, train_size=(side, side),
                        cnn="resnet101", cnn_pretrained=False, class_names=names, pixel_mean=mean, pixel_std=std)


# (pattern on a reference key without "module.", replacement in our names). None drops the key:
# parts the reference stores but its forward never uses.
_RULES: list[tuple[str, str | None]] = [
    (r"image_encoder\.pos_embed\.conv\.(weight|bias)", r"image_encoder.peg.proj.\1"),
    (r"image_encoder\.input_Adapter\.D_fc([12])\.(weight|bias)", r"image_encoder.input_adapter.fc\1.\2"),
    (r"image_encoder\.cnn_embed\.conv_f\.weight", r"image_encoder.cnn_embed.proj.weight"),
    (r"image_encoder\.cnn_embed\.(?:backbone\.)?(conv1|bn1)\.(.+)", r"image_encoder.cnn_embed.\1.\2"),
    (r"image_encoder\.cnn_embed\.res([234])\.(.+)", lambda m: f"image_encoder.cnn_embed.layer{int(m[1]) - 1}.{m[2]}"),
    (r"image_encoder\.cnn_embed\.backbone\.(layer[123])\.(.+)", r"image_encoder.cnn_embed.\1.\2"),
    (r"image_encoder\.cnn_embed\.backbone\.(layer4|fc)\..+", None),
    (r"image_encoder\.blocks\.(\d+)\.MLP_Adapter\.D_fc([12])\.(weight|bias)", r"image_encoder.blocks.\1.mlp_adapter.fc\2.\3"),
    (r"image_encoder\.blocks\.(\d+)\.MLP_Adapter\.aspp\.convs\.([0-3])\.conv\.weight",
     r"image_encoder.blocks.\1.mlp_adapter.branches.\2.weight"),
    (r"image_encoder\.blocks\.(\d+)\.MLP_Adapter\.aspp\.convs\.4\.conv\.weight",
     r"image_encoder.blocks.\1.mlp_adapter.pool_conv.weight"),
    (r"image_encoder\.blocks\.(\d+)\.refine_Adapter\.(.+)", r"image_encoder.blocks.\1.refine_adapter.\2"),
    (r"image_encoder\.(blocks\.\d+\.(?:(?:norm[12]|attn\.qkv|attn\.proj|mlp\.lin[12])\.(?:weight|bias)"
     r"|attn\.rel_pos_[hw])|patch_embed\.proj\.(?:weight|bias)|neck\.[0-3]\.(?:weight|bias))", r"image_encoder.\1"),
    (r"positional_encoder\.proj\.0\.(weight|bias)", r"pos_encoder.proj.\1"),
    (r"prompt_encoder\.no_mask_embed\.weight", "no_mask_embed.weight"),
    (r"prompt_encoder\..+", None),
    (r"mask_decoder\.iou_prediction_head\..+", None),
    (r"mask_decoder\.(transformer\..+|iou_token\.weight|mask_tokens\.weight|output_upscaling\..+"
     r"|output_hypernetworks_mlps\.\d+\..+)", r"mask_decoder.\1"),
]
_COMPILED = [(re.compile(p), r) for p, r in _RULES]


def our_name(key: str) -> str | None:
    """Our parameter name for a reference key (without `module.`); None for a dropped part.

    Raises KeyError for a key the reference does not have.
    """
    for pattern, replacement in _COMPILED:
        match = pattern.fullmatch(key)
        if match is None:
            continue
        if replacement is None:
            return None
        return replacement(match) if callable(replacement) else match.expand(replacement)
    raise KeyError(key)


def _strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def _check_architecture(state: dict[str, Any], config: GSAMConfig, path: Path, num_classes: int) -> None:
    if _MARKER not in state:
        hint = (" (a SAM checkpoint: use gsam train --sam-checkpoint)"
                if "image_encoder.pos_embed" in state else "")
        raise ReferenceImportError(f"{path}: not a G-SAM reference checkpoint (no {_MARKER}){hint}")
    patch = state.get("image_encoder.patch_embed.proj.weight")
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    if patch is not None and (patch.shape[0], depth) != (config.embed_dim, config.depth):
        sizes = {(get_config(m).embed_dim, get_config(m).depth): m for m in REFERENCE_MODELS}
        found = sizes.get((patch.shape[0], depth), "an unknown ViT")
        raise ReferenceImportError(f"{path}: a {found} checkpoint (embed dim {patch.shape[0]}, {depth} blocks) "
                                   f"does not fit --model {config.name}" + (f"; use --model {found}" if found in
                                                                              REFERENCE_MODELS else ""))
    tokens = state.get("mask_decoder.iou_token.weight")
    if tokens is not None and tokens.ndim == 2 and tokens.shape[0] != token_counts(config.num_classes)[0]:
        found = 2 if tokens.shape[0] == 1 else tokens.shape[0]
        raise ReferenceImportError(f"{path}: mask_decoder.iou_token.weight has {tokens.shape[0]} rows: trained "
                                   f"with --num_classes {found}, not --classes {num_classes}")


def map_reference_state(state: dict[str, Any], config: GSAMConfig, target: dict[str, torch.Tensor],
                        path: Path, num_classes: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(our state dict, dropped reference keys); any unknown, missing or misshapen key is an error."""
    state = _strip_prefix(state)
    _check_architecture(state, config, path, num_classes)
    mapped: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    dropped: list[str] = []
    for key, value in state.items():
        try:
            name = our_name(key)
        except KeyError:
            raise ReferenceImportError(f"{path}: unknown key {key!r}: not part of the reference's GSAM "
                                       f"{config.name}") from None
        if name is not None and name not in target and ".output_hypernetworks_mlps." in name:
            name = None  # the binary decoder reads mask token 0 only; hyper-MLPs 1-3 are unused
        if name is None:
            dropped.append(key)
            continue
        if name not in target:
            raise ReferenceImportError(f"{path}: key {key!r} has no place in a {config.name} model with "
                                       f"{config.num_classes} output channel(s)")
        if not isinstance(value, torch.Tensor) or value.shape != target[name].shape:
            shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ReferenceImportError(f"{path}: {key} has shape {shape}, expected {list(target[name].shape)} "
                                       f"for {config.name}")
        if name in mapped:  # the ResNet stem and layers are stored twice (backbone and alias)
            if not torch.equal(mapped[name], value):
                raise ReferenceImportError(f"{path}: {key} differs from its alias {source[name]}")
            dropped.append(key)
            continue
        mapped[name], source[name] = value, key
    missing = [k for k in target if k not in mapped]
    if missing:
        raise ReferenceImportError(f"{path}: missing {len(missing)} tensor(s), first {missing[0]} "
                                   f"(truncated or not a {config.name} G-SAM checkpoint?)")
    return mapped, dropped


def import_reference(checkpoint: str | os.PathLike, num_classes: int, out: str | os.PathLike, *,
                     model: str = "vit_b", train_size: int = 256, normalize: str = "reference",
                     class_names: tuple[str, ...] = (), log: Callable[[str], None] = print) -> Path:
    """Turn an official G-SAM checkpoint into a run directory (config.yaml, best.pt).

    The directory appears whole or not at all: it is written under a temporary name and renamed.
    """
    path, out = Path(checkpoint), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReferenceImportError(f"{out}: already exists and is not empty; choose another --out")
    config = reference_config(model, num_classes, train_size, normalize, class_names)
    gsam = _mapped_model(path, config, num_classes, log)
    source = {"reference_checkpoint": str(path.resolve()), "sha256": sha256_file(path), "num_classes": num_classes,
              "train_size": train_size, "normalize": normalize}
    _write_run(out, gsam, config, source)
    return out


def _mapped_model(path: Path, config: GSAMConfig, num_classes: int, log: Callable[[str], None]):
    """The gsam model with the reference's weights mapped in, checked to give finite logits."""
    from . import build_gsam

    try:
        state = read_state_dict(path)
    except ReferenceImportError:
        raise
    except CheckpointError as exc:
        reason = str(exc).split("; expected")[0]
        raise ReferenceImportError(f"{reason}; expected a state dict saved by G-SAM's train.py") from None
    for wrapper in ("state_dict", "model"):  # some scripts nest the weights one level down
        if isinstance(state.get(wrapper), dict) and _MARKER not in _strip_prefix(state):
            state = state[wrapper]
    _check_architecture(_strip_prefix(state), config, path, num_classes)  # before building a large model
    gsam = build_gsam(config)
    mapped, dropped = map_reference_state(state, config, gsam.state_dict(), path, num_classes)
    gsam.load_state_dict(mapped)
    gsam.eval()
    with torch.no_grad():
        logits = gsam(torch.full((1, 3, 64, 64), 128.0))
    if not torch.isfinite(logits).all():
        raise ReferenceImportError(f"{path}: the imported model gives non-finite logits (damaged weights?)")
    log(f"mapped {len(mapped)} tensors onto gsam {config.name}; dropped {len(dropped)} the reference stores "
        f"but never uses (ResNet layer4/fc and aliases, prompt encoder, IoU head)")
    return gsam


def _write_run(out: Path, gsam, config: GSAMConfig, source: dict[str, Any]) -> None:
    """best.pt and config.yaml, staged beside `out` and renamed onto it."""
    from ..data.dataset import ClassSpec
    from .checkpoint import save_gsam_checkpoint
    from .run import RunDir

    spec = ClassSpec(tuple(config.class_names))
    try:
        with staged_folder(out) as stage:
            save_gsam_checkpoint(stage / "best.pt", gsam, classes=spec.to_dict(), source=source)
            RunDir(stage).write_config({"model": config.to_dict(), "classes": spec.to_dict(), "source": source})
    except OSError as exc:
        raise ReferenceImportError(f"{out}: cannot write the run directory ({exc.strerror or exc})") from None
