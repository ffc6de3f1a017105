"""SAM checkpoints load into GSAM; gsam checkpoints rebuild their model; bad files fail in one line."""

from __future__ import annotations

import pytest
import torch

from gsam.model import build_gsam
from gsam.model.checkpoint import (
    RENAMES,
    CheckpointError,
    load_gsam_checkpoint,
    load_sam_checkpoint,
    save_gsam_checkpoint,
)


@pytest.mark.slow
@pytest.mark.parametrize("num_classes", [1, 4])
def test_sam_vit_b_checkpoint_loads(sam_vit_b_checkpoint, num_classes):
    sam_state = torch.load(sam_vit_b_checkpoint, weights_only=True)
    model = build_gsam("vit_b", num_classes=num_classes, train_size=(256, 256))
    target = model.state_dict()
    shared = {RENAMES.get(k, k) for k in sam_state} & set(target)
    if num_classes > 1:
        shared -= {"mask_decoder.mask_tokens.weight", "mask_decoder.iou_token.weight"}

    report = load_sam_checkpoint(model, sam_vit_b_checkpoint)

    assert set(report.loaded) == shared and len(report.loaded) == len(shared)
    assert "image_encoder.pos_embed" in report.skipped
    assert any(k.startswith("mask_decoder.iou_prediction_head") for k in report.skipped)
    state = model.state_dict()
    assert torch.equal(state["image_encoder.blocks.0.attn.qkv.weight"],
                       sam_state["image_encoder.blocks.0.attn.qkv.weight"])
    for i in model.config.global_attn_indexes:  # resized from 2*64-1 to 2*(256/8)-1
        assert state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape == (63, 64)
        assert f"image_encoder.blocks.{i}.attn.rel_pos_w" in report.resized
    assert state["image_encoder.blocks.0.attn.rel_pos_h"].shape == (27, 64)  # window blocks keep 2*14-1
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 64, 96) * 255).shape == (1, num_classes, 64, 96)


@pytest.mark.slow
def test_vit_l_checkpoint_into_vit_b_fails_in_one_line(tmp_path):
    from segment_anything import build_sam_vit_l

    path = tmp_path / "sam_vit_l_0b3195.pth"
    torch.save(build_sam_vit_l().state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_sam_checkpoint(build_gsam("vit_b"), path)
    message = str(err.value)
    assert "\n" not in message and "vit_l" in message and "vit_b" in message


def test_truncated_and_foreign_files_fail_in_one_line(tmp_path):
    model = build_gsam("tiny")
    good = tmp_path / "good.pt"
    torch.save({"weight": torch.zeros(3)}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:100])
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    for path, expected in [(truncated, "not a readable PyTorch checkpoint"),
                           (text, "not a readable PyTorch checkpoint"),
                           (good, "not a SAM checkpoint"),
                           (tmp_path / "missing.pth", "no such checkpoint file")]:
        with pytest.raises(CheckpointError, match=expected) as err:
            load_sam_checkpoint(model, path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_gsam_checkpoint_rebuilds_its_model(tmp_path, tiny_model):
    path = tmp_path / "model.pt"
    save_gsam_checkpoint(path, tiny_model, epoch=3)
    restored, payload = load_gsam_checkpoint(path)
    assert payload["epoch"] == 3 and restored.config == tiny_model.config
    images = torch.rand(1, 3, 45, 61) * 255
    with torch.no_grad():
        torch.testing.assert_close(restored(images), tiny_model(images))
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file


def test_sam_checkpoint_is_not_a_gsam_checkpoint(sam_shaped_checkpoint):
    with pytest.raises(CheckpointError, match="--sam-checkpoint"):
        load_gsam_checkpoint(sam_shaped_checkpoint)
