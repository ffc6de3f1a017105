"""Shared fixtures: tiny models and generated data, built on the fly, the costly ones once per run.

Every pytest-xdist worker gets an equal share of the cores for torch (one each on a 2-core machine),
so parallel workers never oversubscribe them (an OpenMP thread on a busy core stalls its whole team).
"""

from __future__ import annotations

import os

import pytest
import torch
from support.shared import build_once, worker_count

THREADS = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
              // worker_count())
torch.set_num_threads(THREADS)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))  # subprocesses the tests start take the same share


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
    def build(folder):
        from segment_anything import build_sam_vit_b

        torch.manual_seed(0)
        torch.save(build_sam_vit_b().state_dict(), folder / "sam_vit_b_01ec64.pth")

    return build_once(tmp_path_factory, "sam", build) / "sam_vit_b_01ec64.pth"


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

    return build_once(tmp_path_factory, "data", lambda folder: write_synthetic_dataset(
        folder / "synth", num_classes=3, train=24, val=6, min_size=48, max_size=112, seed=1, progress=False)) / "synth"


@pytest.fixture(scope="session")
def shared_exporter(request) -> str:
    """The exporter of the shared ONNX fixtures: dynamo, the default users deploy, when every tier runs
    (`make test`, CI: -m ""); torchscript in the fast tier, where dynamo's 90 CPU-seconds per export would
    be most of its time (tests/test_export.py exports with both in every tier)."""
    return "dynamo" if request.config.getoption("markexpr") == "" else "torchscript"


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_model, shared_exporter):
    """tiny_model exported once (see `shared_exporter`), shared by the export, serving, property and GPU tests."""
    from gsam.export.onnx import export_onnx

    def build(folder):
        report = export_onnx(tiny_model, folder / "tiny.onnx", exporter=shared_exporter, log=lambda s: None)
        assert report.path == folder / "tiny.onnx"

    return build_once(tmp_path_factory, f"onnx-{shared_exporter}", build) / "tiny.onnx"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synth_data):
    """A tiny model trained for a few epochs on synth_data: the run directory."""
    from gsam.train.config import TrainConfig
    from gsam.train.trainer import train

    def build(folder):
        cfg = TrainConfig(data=str(synth_data), out=str(folder / "tiny"), model="tiny", epochs=20, batch_size=4,
                          lr=2e-3, workers=0, crop=(96, 96), val_every=2)
        train(cfg, progress=False)

    return build_once(tmp_path_factory, "runs", build) / "tiny"


@pytest.fixture(scope="session")
def trained_onnx(tmp_path_factory, trained_run, shared_exporter):
    """trained_run exported (see `shared_exporter`), lineage and palette included (as `gsam export onnx`)."""
    from gsam.export.onnx import export_checkpoint

    return build_once(tmp_path_factory, f"trained_onnx-{shared_exporter}", lambda folder: export_checkpoint(
        trained_run, folder / "model.onnx", exporter=shared_exporter, log=lambda s: None)) / "model.onnx"
