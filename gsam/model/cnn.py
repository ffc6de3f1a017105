"""The CNN branch: a torchvision ResNet's stem and layers 1-3 at stride 8.

As in the reference code the stem's max-pool is not used, so the features come out
at stride 8, the token grid of the paper. Only the layers the forward pass uses are
kept (the reference builds layer4 and fc and never calls them).
"""

from __future__ import annotations

import torchvision
from torch import Tensor, nn

from ..errors import GSAMError
from .config import CNN_CHANNELS

_WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights", "resnet101": "ResNet101_Weights"}


class PretrainedWeightsError(GSAMError):
    """ImageNet weights for the CNN branch could not be fetched or read."""


def narrow_resnet18(width: int) -> nn.Module:
    """ResNet-18's stem and layers 1-3 with `width` channels after the stem instead of 64 (2x and 4x that in
    layers 2 and 3), built from torchvision's BasicBlock and initialized as torchvision initializes ResNets."""
    from torchvision.models.resnet import BasicBlock, conv1x1

    def layer(inplanes: int, planes: int, stride: int) -> nn.Sequential:
        down = None if stride == 1 and inplanes == planes else nn.Sequential(conv1x1(inplanes, planes, stride),
                                                                              nn.BatchNorm2d(planes))
        return nn.Sequential(BasicBlock(inplanes, planes, stride, down), BasicBlock(planes, planes))

    net = nn.Module()
    net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1, net.relu = nn.BatchNorm2d(width), nn.ReLU(inplace=True)
    net.layer1, net.layer2, net.layer3 = layer(width, width, 1), layer(width, 2 * width, 2), layer(2 * width, 4 * width, 2)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return net


def build_resnet(name: str, pretrained: bool) -> nn.Module:
    if name == "resnet18-w16":
        if pretrained:
            raise PretrainedWeightsError("resnet18-w16 has no ImageNet weights: train it from scratch "
                                         "(drop --cnn-pretrained) or use --cnn resnet18")
        return narrow_resnet18(16)
    weights = getattr(torchvision.models, _WEIGHTS[name]).IMAGENET1K_V1 if pretrained else None
    try:
        return getattr(torchvision.models, name)(weights=weights)
    except Exception as exc:  # urllib/OSError/hash errors all mean the same thing to the user
        raise PretrainedWeightsError(
            f"could not fetch ImageNet weights for {name} ({type(exc).__name__}: {exc}); "
            f"put {weights.url.rsplit('/', 1)[-1]} in $TORCH_HOME/hub/checkpoints or train without "
            "pretrained CNN weights"
        ) from None


class CNNBranch(nn.Module):
    """Images (B, 3, H, W) -> features (B, dim, H/8, W/8)."""

    stride = 8

    def __init__(self, name: str, dim: int, pretrained: bool = False) -> None:
        super().__init__()
        resnet = build_resnet(name, pretrained)
        self.conv1, self.bn1, self.relu = resnet.conv1, resnet.bn1, resnet.relu
        self.layer1, self.layer2, self.layer3 = resnet.layer1, resnet.layer2, resnet.layer3
        self.proj = nn.Conv2d(CNN_CHANNELS[name], dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.proj(self.layer3(self.layer2(self.layer1(x))))
