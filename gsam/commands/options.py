"""The CLI's one vocabulary: parameter types and options shared by every command.

One meaning per option name, everywhere (VOCABULARY; tests/test_cli_vocabulary.py fails when a
name has two types in two commands, or is shared without an entry here). A plural name takes a
comma-separated list (`--sizes`, `--backends`, `--precisions`, `--triton-models`); a singular
name takes one value, and is repeatable where its help says so (`--profile`). Names that meant
something else before are refused with a one-line hint (`retired`).
"""

from __future__ import annotations

import click

from gsam.runtime.triton_names import TENSOR_MODEL

from ..device import DEVICE_HELP, check_device_name
from ..errors import GSAMError
from ..precisions import AMP_CHOICES

VOCABULARY = {
    "--model": "what to run or build: a registry name (vit_b, vit_l, vit_h, tiny) or an artifact (run directory, "
               ".pt, .onnx, .plan)",
    "--triton-model": "one model's name inside a Triton server or repository (gsam_python, gsam_image, gsam_onnx, "
                      "gsam_trt)",
    "--triton-models": "the models a Triton server loads, comma-separated",
    "--out": "where the command writes; always an option",
    "--device": "auto (CUDA when present), cpu, cuda or cuda:N",
    "--profile": "a TensorRT shape profile min=NxCxHxW,opt=NxCxHxW,max=NxCxHxW, repeatable",
    "--num-classes": "a model's output channels (1 = binary, read with sigmoid > 0.5)",
    "--classes": "a dataset's number of classes, background included (2 = binary)",
    "--max-pixels": "the most pixels one served request may hold (N x H x W); larger requests get HTTP 400",
    "--tile": "run every image in overlapping tiles of at most TILE x TILE pixels",
    "--overlap": "pixels neighbouring tiles share",
    "--max-batch": "the largest batch one execution takes (1 = no batching)",
    "--precision": "one precision of the precision table: fp32, fp16 or int8",
    "--amp": "torch autocast: auto (bf16 where measured faster on this device), off, bf16 (CPU or CUDA) or fp16 (CUDA)",
    "--data": "a dataset folder (DATA/{train,val}/{images,masks})",
    "--split": "which split of the dataset to score: train, val or test",
    "--sizes": "image sizes HEIGHTxWIDTH, comma-separated",
    "--url": "a Triton server's address host:port",
    "--timeout": "seconds one request to a server may take",
    "--repo": "a Triton model repository folder",
    "--engine": "a TensorRT engine file (with its .json sidecar)",
    "--onnx": "a gsam ONNX file to use instead of exporting one from the run",
    "--seed": "the random seed",
    "--concurrency": "requests in flight at once (closed loop), comma-separated: one measurement per value",
    "--epochs": "training epochs",
    "--exporter": "the ONNX exporter: dynamo or torchscript",
    "--token-stride": "pixels per token: 8 (the paper's grid) or 16 (SAM's)",
    "--min-agreement": "a variant's gate: least fraction of mask pixels equal to the fp32 model's",
    "--max-miou-drop": "a variant's gate: largest val mIoU drop in points against the fp32 model",
    "--container-image": "a Triton container image REPOSITORY:YY.MM-py3 (or @sha256:DIGEST)",
    "--replicas": "pods at start",
    "--gpus-per-replica": "nvidia.com/gpu per pod",
    "--storage-uri": "where pods read the repository: pvc://, s3://, gs:// or as://",
}


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
    """One size HEIGHTxWIDTH, or with `many` a comma-separated list of them: '37x211,640x480'."""

    def __init__(self, many: bool = False) -> None:
        self.many = many
        self.name = "HxW[,HxW...]" if many else "HxW"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            sizes = [parse_size(part) for part in value.split(",") if part.strip()]
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if not self.many and len(sizes) != 1:
            self.fail(f"{value!r} is not one size HEIGHTxWIDTH", param, ctx)
        return sizes if self.many else sizes[0]


class DeviceType(click.ParamType):
    name = "DEVICE"

    def convert(self, value, param, ctx):
        try:
            return check_device_name(value)
        except GSAMError as exc:
            self.fail(str(exc).removeprefix("--device "), param, ctx)


class ModelType(click.ParamType):
    """A registry name or an artifact path, as given; each command checks the kinds it takes."""

    name = "NAME|PATH"

    def convert(self, value, param, ctx):
        return value


class NameListType(click.ParamType):
    """Comma-separated names (repeating the option adds more): 'gsam_python,gsam_image'."""

    name = "NAME[,NAME...]"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        names = [n.strip() for n in value.split(",") if n.strip()]
        if not names:
            self.fail(f"{value!r} names nothing", param, ctx)
        return names


def int_list(ctx, param, value):
    """A click callback: '1,2,4' -> [1, 2, 4], each >= 1 (--concurrency)."""
    try:
        values = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"{value!r} must list integers >= 1")
    return values


SIZE = SizeType()
SIZE_LIST = SizeType(many=True)
DEVICE = DeviceType()
MODEL = ModelType()
NAME_LIST = NameListType()
AMP = click.Choice(list(AMP_CHOICES))


def device_option(default: str = "auto"):
    return click.option("--device", type=DEVICE, default=default, show_default=True, help=DEVICE_HELP)


def out_option(help_text: str, **kwargs):
    kwargs.setdefault("required", True)
    return click.option("--out", help=help_text, **kwargs)


def profile_option(help_text: str):
    """--profile (repeatable), the same syntax for engine builds, Triton configs and deploy folders."""
    return click.option("--profile", "profiles", multiple=True,
                        metavar="min=NxCxHxW,opt=NxCxHxW,max=NxCxHxW", help=help_text)


def gate_options(command):
    """--min-agreement and --max-miou-drop: what a reduced-precision variant must reach to be written."""
    command = click.option("--max-miou-drop", type=float, default=0.5, show_default=True,
                           help="Gate: largest val mIoU drop, in points, against the fp32 model.")(command)
    return click.option("--min-agreement", type=click.FloatRange(0, 1),
                        help="Gate: least fraction of mask pixels equal to the fp32 model's [default: 0.995 fp16, "
                             "0.99 int8].")(command)


def triton_model_option(default: str = TENSOR_MODEL):
    return click.option("--triton-model", default=default, show_default=True,
                        help="Model name inside the Triton server (gsam_python, gsam_image, gsam_onnx or gsam_trt).")


def triton_models_option(help_text: str, default: str | None = None):
    """--triton-models a,b (the option may also be repeated); the value is a flat list of names."""
    return click.option("--triton-models", "triton_models", type=NAME_LIST, multiple=True,
                        default=(default,) if default else (), show_default=default,
                        callback=lambda ctx, param, value: [n for names in value for n in names], help=help_text)


AMP_HELP = ("auto runs bf16 where it is measured faster on this device (a GPU with bf16; a CPU with native "
            "bf16 kernels) and fp32 elsewhere, and says why; off, bf16 (CPU or CUDA) and fp16 (CUDA) force a mode.")


def amp_option(help_text: str = "Torch backend: mixed precision (autocast)."):
    return click.option("--amp", type=AMP, default="auto", show_default=True, help=f"{help_text} {AMP_HELP}")


def repo_option(help_text: str, default: str | None = "triton_models"):
    """--repo: a Triton model repository folder, the same way in every command."""
    return click.option("--repo", default=default, show_default=default is not None, type=click.Path(file_okay=False),
                        help=help_text)


def precision_option(help_text: str, default: str | None = "fp32"):
    """--precision: one precision of the table in gsam/precisions.py, the same choices in every command."""
    from ..precisions import ONNX_PRECISIONS

    return click.option("--precision", type=click.Choice(list(ONNX_PRECISIONS)), default=default,
                        show_default=default is not None, help=help_text)


def retired(old: str, hint: str, is_flag: bool = False):
    """A hidden option that only answers with a one-line hint: names that were renamed or removed."""

    def refuse(ctx, param, value):
        if value not in (None, False, ()):
            raise click.UsageError(f"{old} {hint}", ctx)

    return click.option(old, f"_retired_{old.strip('-').replace('-', '_')}", hidden=True, is_flag=is_flag,
                        expose_value=False, callback=refuse, default=None if not is_flag else False)
