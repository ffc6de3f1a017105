"""Forward cost of a model at a given input size, counted two ways.

`count_flops` counts every operation PyTorch runs (torch.utils.flop_counter);
`count_layer_macs` counts only Conv/Linear layers, the convention of the GSAM paper's
cost table (thop), so our numbers can be set beside the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
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


def count_layer_macs(model: nn.Module, inputs: torch.Tensor) -> int:
    """Multiply-adds of nn.Conv2d, nn.ConvTranspose2d and nn.Linear layers only (the thop convention)."""
    total = 0

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, nn.Conv2d):
            total += output.numel() * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
        else:  # ConvTranspose2d: every input pixel scatters into a kernel-sized patch
            total += args[0].numel() * (module.out_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]

    layers = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total
