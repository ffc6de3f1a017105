"""Shared fixtures: tiny models and generated data, built on the fly."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny 3-class GSAM in eval mode with non-zero relative-position tables (so they matter)."""
    from gsam.model import build_gsam

    torch.manual_seed(0)
    model = build_gsam("tiny", num_classes=3, class_names=("background", "disc", "square")).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "rel_pos" in name:
                param.normal_(0, 0.5)
    return model


@pytest.fixture(scope="session")
def sam_vit_b_checkpoint(tmp_path_factory):
    """A state dict from segment_anything.build_sam_vit_b(): the real file's keys and shapes, random values."""
    from segment_anything import build_sam_vit_b

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "sam_vit_b_01ec64.pth"
    torch.save(build_sam_vit_b().state_dict(), path)
    return path
