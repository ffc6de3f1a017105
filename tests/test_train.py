"""Training learns, resumes exactly, runs under torchrun, and its run directory feeds eval and predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from gsam.cli import cli
from gsam.data.dataset import SegmentationDataset
from gsam.data.metrics import ConfusionMatrix
from gsam.model.checkpoint import load_gsam_checkpoint, read_gsam_checkpoint
from gsam.train.config import TrainConfig
from gsam.train.trainer import train


def _all_background_miou(data_root) -> float:
    dataset = SegmentationDataset.open(data_root, "val")
    confusion = ConfusionMatrix(dataset.spec.num_classes)
    for i in range(len(dataset)):
        _, target = dataset[i]
        confusion.update(torch.zeros_like(target), target, dataset.spec.ignore_index)
    return confusion.compute()["miou"]


def test_training_lowers_loss_and_beats_all_background(trained_run, synth_data):
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 21))
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    best = max(r["val_miou"] for r in rows if "val_miou" in r)
    assert best > _all_background_miou(synth_data) + 0.1
    for name in ("config.yaml", "last.pt", "best.pt", "curves.png"):
        assert (trained_run / name).is_file()
    assert read_gsam_checkpoint(trained_run / "best.pt")["metrics"]["val_miou"] == best


def _quick_config(data, out, epochs=2):
    return TrainConfig(data=str(data), out=str(out), model="tiny", epochs=epochs, batch_size=2, lr=1e-3,
                       workers=0, crop=(64, 64), steps_per_epoch=2, seed=3)


def test_resume_continues_exactly(tmp_path, synth_data):
    straight = train(_quick_config(synth_data, tmp_path / "straight"), progress=False)
    train(_quick_config(synth_data, tmp_path / "split"), progress=False, stop_after=1)
    assert read_gsam_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 1
    result = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "split"), "--quiet"])
    assert result.exit_code == 0, result.output
    a = read_gsam_checkpoint(straight / "last.pt")
    b = read_gsam_checkpoint(tmp_path / "split" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        assert (value.double() - b["model"][key].double()).abs().max() <= 1e-6, key
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_config_file_with_flag_override(tmp_path, synth_data):
    config = tmp_path / "train.yaml"
    config.write_text(f"data: {synth_data}\nmodel: tiny\nepochs: 5\nbatch-size: 2\ncrop: 64\nworkers: 0\n"
                      "steps_per_epoch: 1\n")
    result = CliRunner().invoke(cli, ["train", "--config", str(config), "--out", str(tmp_path / "run"),
                                      "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    saved = read_gsam_checkpoint(tmp_path / "run" / "last.pt")["train_config"]
    assert saved["epochs"] == 1 and saved["batch_size"] == 2 and saved["crop"] == [64, 64]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path, synth_data):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "gsam", "train", "--data", str(synth_data), "--out", str(out), "--model", "tiny",
               "--epochs", "1", "--batch-size", "2", "--steps-per-epoch", "2", "--crop", "64", "--workers", "0",
               "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # only rank 0 wrote
    model, payload = load_gsam_checkpoint(out / "last.pt")
    assert payload["epoch"] == 1 and model.config.name == "tiny"


def test_eval_and_predict_from_the_run_directory(tmp_path, trained_run, synth_data):
    runner = CliRunner()
    result = runner.invoke(cli, ["eval", str(trained_run), "--data", str(synth_data), "--out", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["images"] == 6 and len(report["iou"]) == 3 and "mIoU" in result.output
    result = runner.invoke(cli, ["predict", str(trained_run), str(synth_data / "val" / "images"),
                                 "--out", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    for image_path in sorted((synth_data / "val" / "images").glob("*.png")):
        mask = Image.open(tmp_path / "pred" / "masks" / image_path.name)
        overlay = Image.open(tmp_path / "pred" / "overlays" / image_path.name)
        assert mask.size == overlay.size == Image.open(image_path).size


@pytest.mark.slow
def test_bf16_autocast_on_the_cpu_trains_resumes_and_exports(tmp_path, synth_data):
    out = tmp_path / "bf16"
    base = ["train", "--data", str(synth_data), "--out", str(out), "--model", "tiny", "--epochs", "2",
            "--batch-size", "2", "--steps-per-epoch", "2", "--crop", "64", "--workers", "0", "--device", "cpu",
            "--amp", "bf16", "--quiet"]
    runner = CliRunner()
    result = runner.invoke(cli, [*base, "--stop-after", "1"])
    assert result.exit_code == 0, result.output
    first = read_gsam_checkpoint(out / "last.pt")
    assert first["epoch"] == 1 and first["train_config"]["amp"] == "bf16"
    result = runner.invoke(cli, ["train", "--resume", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    resumed = read_gsam_checkpoint(out / "last.pt")
    assert resumed["epoch"] == 2 and resumed["train_config"]["amp"] == "bf16"
    # autocast computes in bf16 but keeps fp32 weights, which moved and stayed finite
    for key, value in resumed["model"].items():
        if value.is_floating_point():
            assert value.dtype == torch.float32 and torch.isfinite(value).all(), key
    assert any(not torch.equal(value, first["model"][key]) for key, value in resumed["model"].items())
    result = runner.invoke(cli, ["export", "onnx", str(out), "--out", str(tmp_path / "bf16.onnx"),
                                 "--exporter", "torchscript", "--verify-sizes", "64x80"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bf16.onnx").is_file()


def test_predict_under_bf16_agrees_with_fp32(tmp_path, trained_run, synth_data):
    import numpy as np

    runner = CliRunner()
    images = str(synth_data / "val" / "images")
    for amp in ("off", "bf16"):
        result = runner.invoke(cli, ["predict", str(trained_run), images, "--out", str(tmp_path / amp),
                                     "--device", "cpu", "--amp", amp])
        assert result.exit_code == 0, result.output
    agree = total = 0
    for mask_path in sorted((tmp_path / "off" / "masks").glob("*.png")):
        fp32 = np.asarray(Image.open(mask_path))
        bf16 = np.asarray(Image.open(tmp_path / "bf16" / "masks" / mask_path.name))
        agree, total = agree + int((fp32 == bf16).sum()), total + fp32.size
    assert total > 0 and agree / total > 0.97, agree / total
    onnx_result = runner.invoke(cli, ["predict", str(tmp_path / "none.onnx"), images, "--out", str(tmp_path / "x"),
                                      "--amp", "bf16"])
    assert onnx_result.exit_code != 0 and "applies to the torch backend only" in onnx_result.output
