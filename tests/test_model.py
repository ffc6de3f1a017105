"""The GSAM module: any input size, the export-ready building blocks, the trainable policy and its cost."""

from __future__ import annotations

import re

import pytest
import torch
from segment_anything.modeling.image_encoder import get_rel_pos as sam_get_rel_pos
from torch import nn

from gsam.model import build_gsam
from gsam.model.attention import get_rel_pos, pool_to_grid
from gsam.model.flops import count_flops
from gsam.model.trainable import count_parameters


@pytest.mark.parametrize("size", [(33, 47), (64, 64), (100, 260), (224, 224), (257, 129)])
def test_forward_keeps_input_size(tiny_model, size):
    images = torch.rand(2, 3, *size) * 255
    with torch.no_grad():
        logits = tiny_model(images)
    assert logits.shape == (2, 3, *size)
    assert torch.isfinite(logits).all()


def test_batch_items_are_independent(tiny_model):
    images = torch.rand(2, 3, 70, 90) * 255
    with torch.no_grad():
        pair = tiny_model(images)
        single = tiny_model(images[1:])
    torch.testing.assert_close(pair[1:], single, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("images, message", [
    (torch.rand(1, 2, 64, 64), "3 (RGB) channels"),
    (torch.rand(1, 3, 16, 16), "at least 32x32"),
    (torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), "float tensor"),
    (torch.rand(3, 64, 64), "shape [N, 3, H, W]"),
])
def test_bad_images_raise_value_error_naming_the_problem(tiny_model, images, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny_model(images)


@pytest.mark.parametrize("shape", [(5, 7), (3, 3), (14, 14), (31, 9), (64, 40), (4, 100)])
def test_matmul_pooling_equals_adaptive_avg_pool(shape):
    x = torch.randn(4, *shape, 16)
    expected = nn.AdaptiveAvgPool2d(3)(x.permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)
    assert (pool_to_grid(x, 3) - expected).abs().max() <= 1e-6


@pytest.mark.parametrize("q_size", [3, 4, 5, 7, 13, 14, 29, 32, 63, 80])
def test_relative_positions_equal_segment_anything(q_size):
    torch.manual_seed(q_size)
    table = torch.randn(2 * 32 - 1, 16)  # sized for a 32-token training grid, queried at q_size
    assert (get_rel_pos(q_size, 3, table) - sam_get_rel_pos(q_size, 3, table)).abs().max() <= 1e-6


def test_only_trainable_parameters_get_gradients():
    torch.manual_seed(0)
    model = build_gsam("tiny", num_classes=2).train()
    loss = model(torch.rand(2, 3, 64, 96) * 255).logsumexp(dim=1).mean()
    loss.backward()
    named = dict(model.named_parameters())
    for name, param in named.items():
        if param.requires_grad:
            assert param.grad is not None, f"trainable {name} got no gradient"
        else:
            assert param.grad is None, f"frozen {name} got a gradient"
    assert named["image_encoder.peg.proj.weight"].grad is not None
    assert not named["image_encoder.blocks.0.attn.qkv.weight"].requires_grad  # SAM's ViT stays frozen
    assert not named["image_encoder.blocks.0.attn.rel_pos_h"].requires_grad   # window block
    assert named["image_encoder.blocks.1.attn.rel_pos_h"].requires_grad       # global block
    total, trainable = count_parameters(model)
    assert 0 < trainable < total


@pytest.mark.slow
def test_encoder_cost_is_linear_in_pixels_at_stride_8():
    with torch.device("meta"):  # FLOPs are counted from shapes: no need to compute
        model = build_gsam("vit_b").eval()
    per_pixel = [count_flops(model, s, s).module("GSAM.image_encoder") / (s * s) for s in (128, 512)]
    assert abs(per_pixel[0] - per_pixel[1]) / per_pixel[1] < 0.15


def test_token_stride_16_quarters_the_vit_grid():
    model8, model16 = build_gsam("tiny", token_stride=8), build_gsam("tiny", token_stride=16)
    assert model8.config.token_grid(128, 192) == (16, 24)
    assert model16.config.token_grid(128, 192) == (8, 12)
    with torch.no_grad():
        assert model16.eval()(torch.rand(1, 3, 50, 70) * 255).shape == (1, 1, 50, 70)
    assert model16.config.min_size == 48


class _FunctionalLayers(nn.Module):
    """Projections called through torch.nn.functional, which module hooks never see, beside real layers."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.depthwise = nn.Parameter(torch.randn(8, 1, 3, 3))

    def forward(self, x):
        y = torch.nn.functional.conv2d(x, self.conv.weight, padding=1)  # (1, 8, 5, 6)
        y = torch.nn.functional.conv2d(y, self.depthwise, padding=1, groups=8)  # (1, 8, 5, 6)
        tokens = torch.nn.functional.linear(y.permute(0, 2, 3, 1), self.qkv.weight)  # (1, 5, 6, 24)
        return self.conv(x), tokens, self.up(y)  # (1, 8, 5, 6) and (1, 4, 10, 12)


def test_layer_macs_count_functional_linear_and_conv_calls():
    from gsam.model.flops import count_layer_macs

    pixels = 5 * 6
    expected = (pixels * 8 * 3 * 9      # F.conv2d
                + pixels * 8 * 1 * 9    # depthwise F.conv2d, groups=8
                + pixels * 24 * 8       # F.linear on the qkv weight
                + pixels * 8 * 3 * 9    # nn.Conv2d
                + pixels * 8 * 4 * 4)   # nn.ConvTranspose2d: each input pixel scatters 4 channels x 2x2
    assert count_layer_macs(_FunctionalLayers(), torch.rand(1, 3, 5, 6)) == expected
