"""GSAM's small trainable modules beside SAM's frozen ViT blocks."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import LayerNorm2d


class InputAdapter(nn.Module):
    """Bottleneck MLP with a residual on the patch tokens (B, H, W, C)."""

    def __init__(self, dim: int, ratio: float = 0.25) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(self.act(self.fc1(x)))


class MultiScaleAdaptFormer(nn.Module):
    """Spatial-Multiscale AdaptFormer: a bottleneck whose middle sees five receptive fields.

    Linear down, GELU, then a 3x3 conv, three dilated 3x3 convs and a global-pool branch
    summed with a residual (ReLU after each branch, as the reference code), then Linear up.
    Takes and returns (B, H, W, C); the block adds it with scale 0.5.
    """

    def __init__(self, dim: int, ratio: float = 0.25, dilations: tuple[int, ...] = (12, 24, 36)) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.branches = nn.ModuleList(
            [nn.Conv2d(hidden, hidden, 3, padding=1, bias=False)]
            + [nn.Conv2d(hidden, hidden, 3, padding=d, dilation=d, bias=False) for d in dilations]
        )
        self.pool_conv = nn.Conv2d(hidden, hidden, 1, bias=False)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.fc1(x)).permute(0, 3, 1, 2)
        out = h
        for conv in self.branches:
            out = out + self.relu(conv(h))
        # Global branch: pooling to 1x1 then upsampling back is a broadcast.
        out = out + self.relu(self.pool_conv(h.mean(dim=(2, 3), keepdim=True)))
        return self.fc2(out.permute(0, 2, 3, 1))


class SqueezeExcite(nn.Module):
    """Channel gating from globally pooled features."""

    def __init__(self, dim: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim // reduction)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(dim // reduction, dim)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.fc2(self.relu(self.fc1(x.mean(dim=(2, 3)))))
        return x * gate.sigmoid()[:, :, None, None]


class RefineAdapter(nn.Module):
    """Refines the CNN features (B, C, H, W) in each global-attention block.

    1x1 conv to C/8, depthwise 3x3, 1x1 back to C (LayerNorm2d + GELU after each),
    summed with a squeeze-and-excitation path on the input.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        mid = dim // 8
        self.conv = nn.Sequential(
            nn.Conv2d(dim, mid, 1, bias=False), LayerNorm2d(mid), nn.GELU(),
            nn.Conv2d(mid, mid, 3, padding=1, groups=mid, bias=False), LayerNorm2d(mid), nn.GELU(),
            nn.Conv2d(mid, dim, 1, bias=False), LayerNorm2d(dim), nn.GELU(),
        )
        self.se = SqueezeExcite(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) + self.se(x)
