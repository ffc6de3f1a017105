"""The mask decoder has the reference's token set and computes the reference's function."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling.mask_decoder import MaskDecoder
from segment_anything.modeling.transformer import TwoWayTransformer

from gsam.model import build_gsam
from gsam.model.checkpoint import load_sam_checkpoint
from gsam.model.decoder import ClassMaskDecoder


@pytest.mark.parametrize("num_classes, iou_rows, mask_rows", [(1, 1, 4), (2, 2, 9), (3, 3, 13), (5, 5, 21)])
def test_token_counts_follow_the_reference(num_classes, iou_rows, mask_rows):
    decoder = build_gsam("tiny", num_classes=num_classes).mask_decoder
    assert decoder.iou_token.weight.shape == (iou_rows, 32)
    assert decoder.mask_tokens.weight.shape == (mask_rows, 32)
    assert len(decoder.output_hypernetworks_mlps) == num_classes


def _sam_decoder(dim: int, mask_tokens: int) -> MaskDecoder:
    transformer = TwoWayTransformer(depth=1, embedding_dim=dim, num_heads=2, mlp_dim=64)
    return MaskDecoder(transformer_dim=dim, transformer=transformer, num_multimask_outputs=mask_tokens - 1,
                       iou_head_hidden_dim=dim).eval()


def _inputs(dim: int = 32, h: int = 5, w: int = 7):
    torch.manual_seed(1)
    return torch.randn(1, dim, h, w), torch.randn(1, dim, h, w), torch.randn(1, dim, 1, 1).expand(1, dim, h, w)


@pytest.mark.parametrize("num_classes", [1, 3])
def test_decoder_matches_the_reference_computation(num_classes):
    """SAM's MaskDecoder, given the reference's token sequence, is the reference decoder.

    The reference concatenates [IoU tokens, mask tokens] and reads class i from output 1 + i
    through hyper-MLP i. SAM's decoder has one IoU token and reads mask j from output 1 + j,
    so putting the reference's tokens 1.. into SAM's mask tokens reproduces it exactly.
    """
    torch.manual_seed(0)
    ours = ClassMaskDecoder(32, num_classes, depth=1, num_heads=2, mlp_dim=64).eval()
    tokens = torch.cat([ours.iou_token.weight, ours.mask_tokens.weight]).detach()
    sam = _sam_decoder(32, tokens.shape[0] - 1)
    state = {k: v for k, v in ours.state_dict().items() if k not in ("iou_token.weight", "mask_tokens.weight")}
    state.update({"iou_token.weight": tokens[:1], "mask_tokens.weight": tokens[1:]})
    missing, unexpected = sam.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(("iou_prediction_head", "output_hypernetworks_mlps")) for k in missing)
    embedding, pos, dense = _inputs()
    with torch.no_grad():
        expected, _ = sam.predict_masks(embedding, pos, torch.zeros(1, 0, 32), dense)
        got = ours(embedding, pos, dense)
    torch.testing.assert_close(got, expected[:, :num_classes], rtol=1e-5, atol=1e-5)


def test_every_token_changes_the_output():
    """The extra tokens attend with the read-out tokens: dropping one changes the logits."""
    torch.manual_seed(0)
    decoder = ClassMaskDecoder(32, 1, depth=1, num_heads=2, mlp_dim=64).eval()
    embedding, pos, dense = _inputs()
    with torch.no_grad():
        before = decoder(embedding, pos, dense)
        decoder.mask_tokens.weight[3] += 1.0
        after = decoder(embedding, pos, dense)
    assert (before - after).abs().max() > 1e-3


def _sam_format_state(model, tmp_path):
    """A SAM-format file for a tiny model: its own keys plus SAM's decoder extras, random values."""
    torch.manual_seed(2)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    state["prompt_encoder.no_mask_embed.weight"] = state.pop("no_mask_embed.weight")
    state["mask_decoder.iou_token.weight"] = torch.randn(1, 32)
    state["mask_decoder.mask_tokens.weight"] = torch.randn(4, 32)
    for i in range(4):
        for j, (n, k) in enumerate([(32, 32), (32, 32), (32, 4)]):
            state[f"mask_decoder.output_hypernetworks_mlps.{i}.layers.{j}.weight"] = torch.randn(k, n)
            state[f"mask_decoder.output_hypernetworks_mlps.{i}.layers.{j}.bias"] = torch.randn(k)
    state["mask_decoder.iou_prediction_head.layers.2.weight"] = torch.randn(4, 32)
    path = tmp_path / "sam_tiny.pth"
    torch.save(state, path)
    return state, path


def test_sam_weights_fill_the_binary_token_set(tmp_path):
    model = build_gsam("tiny", num_classes=1)
    state, path = _sam_format_state(model, tmp_path)
    report = load_sam_checkpoint(model, path)
    loaded = model.state_dict()
    assert torch.equal(loaded["mask_decoder.iou_token.weight"], state["mask_decoder.iou_token.weight"])
    assert torch.equal(loaded["mask_decoder.mask_tokens.weight"], state["mask_decoder.mask_tokens.weight"])
    assert torch.equal(loaded["mask_decoder.output_hypernetworks_mlps.0.layers.2.weight"],
                       state["mask_decoder.output_hypernetworks_mlps.0.layers.2.weight"])
    assert "mask_decoder.output_hypernetworks_mlps.1.layers.0.weight" in report.skipped
    assert "mask_decoder.iou_prediction_head.layers.2.weight" in report.skipped


def test_multi_class_tokens_keep_their_initialization(tmp_path):
    model = build_gsam("tiny", num_classes=3)
    before = model.state_dict()["mask_decoder.mask_tokens.weight"].clone()
    _, path = _sam_format_state(build_gsam("tiny", num_classes=1), tmp_path)
    report = load_sam_checkpoint(model, path)
    assert torch.equal(model.state_dict()["mask_decoder.mask_tokens.weight"], before)
    assert {"mask_decoder.iou_token.weight", "mask_decoder.mask_tokens.weight"} <= set(report.skipped)
