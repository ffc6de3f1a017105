"""Processes killed with SIGKILL at random moments leave loadable checkpoints and no half-written models."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import onnx
import pytest

from gsam.model.checkpoint import load_gsam_checkpoint, read_gsam_checkpoint

pytestmark = pytest.mark.crash
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _train_command(data, out, *extra):
    return [sys.executable, "-m", "gsam", "train", "--data", str(data), "--out", str(out), "--model", "tiny",
            "--epochs", "100", "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64", "--workers", "0",
            "--quiet", *extra]


def _wait_for(path, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("trial", range(4))
def test_training_killed_at_a_random_moment_resumes(tmp_path, synth_data, trial):
    rng = random.Random(trial)
    out = tmp_path / "run"
    process = subprocess.Popen(_train_command(synth_data, out), env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    _wait_for(out / "last.pt", process)
    time.sleep(rng.uniform(0.0, 2.5))  # lands anywhere: mid-step, mid-validation, mid-checkpoint write
    process.send_signal(signal.SIGKILL)
    process.wait()

    last = read_gsam_checkpoint(out / "last.pt")
    best = read_gsam_checkpoint(out / "best.pt")
    load_gsam_checkpoint(out / "last.pt")
    assert last["epoch"] >= 1 and best["epoch"] <= last["epoch"]

    resumed = subprocess.run([sys.executable, "-m", "gsam", "train", "--resume", str(out), "--quiet",
                              "--stop-after", str(last["epoch"] + 1)], env=ENV, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_gsam_checkpoint(out / "last.pt")["epoch"] == last["epoch"] + 1
    assert not list(out.glob(".*.tmp"))
    epochs = [int(line.split('"epoch": ')[1].split(",")[0]) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, last["epoch"] + 2))


@pytest.mark.parametrize("trial", range(3))
def test_export_killed_at_a_random_moment_leaves_no_partial_model(tmp_path, trained_run, trial):
    out = tmp_path / "model.onnx"
    process = subprocess.Popen([sys.executable, "-m", "gsam", "export", "onnx", str(trained_run), "--out", str(out),
                                "--exporter", "torchscript"], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".gsam-export-*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the export has started writing once its staging folder exists
    time.sleep(random.Random(trial).uniform(0.0, 3.0))  # mid-trace, mid-verification or mid-rename
    process.send_signal(signal.SIGKILL)
    process.wait()
    if out.exists():  # killed after the final rename: then it must be the whole, checked model
        onnx.checker.check_model(str(out))
        assert {p.key for p in onnx.load(str(out)).metadata_props} >= {"num_classes", "min_size"}
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".gsam-export-")] in ([], ["model.onnx"])
