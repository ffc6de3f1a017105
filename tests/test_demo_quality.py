"""The demo's training recipe segments its validation images: mIoU >= 0.90 at native size (under --amp auto)."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.slow
def test_demo_recipe_reaches_its_miou(tmp_path):
    from gsam.data.dataset import SegmentationDataset
    from gsam.data.synth import write_synthetic_dataset
    from gsam.demo import DEMO_DATA, demo_train_config
    from gsam.model.run import load_trained
    from gsam.train.engine import evaluate
    from gsam.train.trainer import train

    spec = write_synthetic_dataset(tmp_path / "data", progress=False, **DEMO_DATA)
    run = train(demo_train_config(tmp_path / "data", tmp_path / "run"), progress=False)
    model, _ = load_trained(run)
    result = evaluate(model, SegmentationDataset.open(tmp_path / "data", "val", spec), spec.num_classes,
                      torch.device("cpu"))
    assert result["miou"] >= 0.90, f"demo recipe reached mIoU {result['miou']:.4f} (per class {result['iou']})"
    assert min(result["iou"]) >= 0.8, f"a class is left behind: {result['iou']}"
