"""Forward cost of a model at a given input size, counted two ways.

`count_flops` counts every operation PyTorch runs (torch.utils.flop_counter);
`count_layer_macs` counts only convolutions and linear projections, the convention of the
GSAM paper's cost table (thop), so our numbers can be set beside the paper's; unlike thop's
module hooks it also sees projections called through torch.nn.functional.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class FlopReport:
    total: int
    by_module: dict[str, int]

    def module(self, name: str) -> int:
        return self.by_module.get(name, 0)


def counted_flops(model: nn.Module, inputs: torch.Tensor) -> FlopCounterMode:
    """Run model(inputs) under a FlopCounterMode and return the counter.

    Parameters are switched to requires_grad=False for the run: FlopCounterMode's module
    tracker fails on parameters that require grad under no_grad.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter:
            model(inputs)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return counter


def count_flops(model: nn.Module, height: int, width: int, batch: int = 1) -> FlopReport:
    """FLOPs (2 x multiply-adds) of one forward pass on a (batch, 3, height, width) input."""
    images = torch.zeros(batch, 3, height, width, device=next(model.parameters()).device)
    counter = counted_flops(model, images)
    by_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    return FlopReport(counter.get_total_flops(), by_module)


class _LayerMacCounter(TorchFunctionMode):
    """Counts linear, conv2d and conv_transpose2d as they are called, whether by an nn.Linear /
    nn.Conv2d module or directly through torch.nn.functional (which no module hook sees)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _LINEAR:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            self.total += out.numel() * weight.shape[1]
        elif func in _CONV:  # weight (out, in / groups, kh, kw): each output element sums that many products
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            self.total += out.numel() * weight[0].numel()
        elif func in _CONV_TRANSPOSE:  # weight (in, out / groups, kh, kw): each input pixel scatters a patch
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            self.total += args[0].numel() * weight[0].numel()
        return out


_LINEAR = {F.linear}
_CONV = {F.conv2d}
_CONV_TRANSPOSE = {F.conv_transpose2d}


def count_layer_macs(model: nn.Module, inputs: torch.Tensor) -> int:
    """Multiply-adds of linear, conv2d and conv_transpose2d calls only (the thop convention), counting
    functional calls such as F.linear(x, self.qkv.weight) as well as nn.Linear / nn.Conv2d layers."""
    with torch.no_grad(), _LayerMacCounter() as counter:
        model(inputs)
    return counter.total
