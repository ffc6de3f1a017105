"""The CLI's one vocabulary: parameter types and options shared by every command.

One meaning per option name, everywhere:
  --model         what to run: a registry name (vit_b, tiny...) or an artifact (run dir, .pt, .onnx, .plan)
  --triton-model  the model's name inside a Triton server or repository (gsam_python...)
  --out           where the command writes (always an option)
  --device        auto, cpu, cuda or cuda:N
  --profile       a TensorRT shape profile, min=NxCxHxW,opt=NxCxHxW,max=NxCxHxW (repeatable)
  --num-classes   number of classes (or output channels for a model)
"""

from __future__ import annotations

import click

from ..device import DEVICE_HELP, check_device_name
from ..errors import GSAMError


def parse_size(text: str) -> tuple[int, int]:
    """'512' -> (512, 512); '480x640' -> (480, 640), read as HEIGHTxWIDTH."""
    parts = text.lower().strip().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"size {text!r} is not HEIGHTxWIDTH (e.g. 480x640) or a single number")
    h, w = (int(parts[0]), int(parts[-1]))
    if h <= 0 or w <= 0:
        raise ValueError(f"size {text!r} must be positive")
    return h, w


class SizeType(click.ParamType):
    name = "HxW"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class SizeListType(click.ParamType):
    """Comma-separated sizes: '37x211,640x480'."""

    name = "HxW[,HxW...]"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return [parse_size(part) for part in value.split(",") if part.strip()]
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class DeviceType(click.ParamType):
    name = "DEVICE"

    def convert(self, value, param, ctx):
        try:
            return check_device_name(value)
        except GSAMError as exc:
            self.fail(str(exc).removeprefix("--device "), param, ctx)


SIZE = SizeType()
SIZE_LIST = SizeListType()
DEVICE = DeviceType()
AMP = click.Choice(["off", "bf16", "fp16"])  # the modes of gsam.train.amp, named here without importing torch


def device_option(default: str = "auto"):
    return click.option("--device", type=DEVICE, default=default, show_default=True, help=DEVICE_HELP)


def out_option(help_text: str, **kwargs):
    kwargs.setdefault("required", True)
    return click.option("--out", help=help_text, **kwargs)


def profile_option(help_text: str):
    """--profile (repeatable), the same syntax for engine builds and Triton configs."""
    return click.option("--profile", "profiles", multiple=True,
                        metavar="min=NxCxHxW,opt=NxCxHxW,max=NxCxHxW", help=help_text)


def triton_model_option(default: str = "gsam_python"):
    return click.option("--triton-model", default=default, show_default=True,
                        help="Model name inside the Triton server (gsam_python, gsam_onnx or gsam_trt).")


def amp_option(help_text: str = "Torch backend: run under autocast, bf16 (CPU or CUDA) or fp16 (CUDA only)."):
    return click.option("--amp", type=AMP, default="off", show_default=True, help=help_text)
