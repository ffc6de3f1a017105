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


@pytest.fixture(scope="session")
def sam_shaped_checkpoint(tmp_path_factory):
    """The few tensors by which gsam recognises a SAM vit_b file (patch embedding, 12 blocks), for the
    error-message tests of the fast tier; sam_vit_b_checkpoint is the whole model."""
    state = {"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)}
    state |= {f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(768) for i in range(12)}
    path = tmp_path_factory.mktemp("sam_shaped") / "sam_vit_b_01ec64.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    """A small generated 3-class dataset (train 24, val 6, sizes 48..112)."""
    from gsam.data.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("data") / "synth"
    write_synthetic_dataset(root, num_classes=3, train=24, val=6, min_size=48, max_size=112, seed=1, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_model):
    """tiny_model exported once with the default (dynamo) exporter: what users deploy, shared by the
    export, serving, property and GPU tests."""
    from gsam.export.onnx import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    report = export_onnx(tiny_model, path, log=lambda s: None)
    assert report.path == path
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synth_data):
    """A tiny model trained for a few epochs on synth_data: the run directory."""
    from gsam.train.config import TrainConfig
    from gsam.train.trainer import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = TrainConfig(data=str(synth_data), out=str(out), model="tiny", epochs=10, batch_size=4, lr=2e-3,
                      workers=0, crop=(96, 96), val_every=2)
    return train(cfg, progress=False)


@pytest.fixture(scope="session")
def trained_onnx(tmp_path_factory, trained_run):
    """trained_run exported with the default exporter, lineage and palette included (as `gsam export onnx`)."""
    from gsam.export.onnx import export_checkpoint

    path = tmp_path_factory.mktemp("trained_onnx") / "model.onnx"
    export_checkpoint(trained_run, path, log=lambda s: None)
    return path
