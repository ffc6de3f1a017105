"""Gradient accumulation: N micro-batches of B equal one batch of N x B, and resume stays exact."""

from __future__ import annotations

import contextlib

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from gsam.cli import cli
from gsam.data.dataset import SegmentationDataset
from gsam.errors import GSAMError
from gsam.model import build_gsam
from gsam.model.checkpoint import read_gsam_checkpoint
from gsam.train.config import TrainConfig
from gsam.train.engine import train_one_epoch
from gsam.train.losses import SegmentationLoss
from gsam.train.trainer import train


class _BatchNormFrozen(nn.Module):
    """Trains the wrapped model with its BatchNorm layers in eval mode: batch statistics of a batch
    of 4 and of two batches of 2 differ by design, so the equivalence is checked without them."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def forward(self, x):
        return self.model(x)


def _one_step(num_outputs: int, batches: list, accumulate: int, optimizer_name: str, scaled: bool = False) -> dict:
    torch.manual_seed(0)
    model = build_gsam("tiny", num_classes=num_outputs, train_size=(64, 64))
    params = [p for p in model.parameters() if p.requires_grad]
    # Adam is nearly blind to a gradient's scale; plain SGD shows a missing 1/N at once.
    optimizer = torch.optim.Adam(params, lr=1e-4) if optimizer_name == "adam" else torch.optim.SGD(params, lr=0.5)
    # fp16 AMP's loss scaling, on the CPU: scaled gradients summed over a window, unscaled once at its step
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, enabled=scaled)
    stats = train_one_epoch(_BatchNormFrozen(model), batches, SegmentationLoss(num_outputs, 255), optimizer, scaler,
                            device=torch.device("cpu"), accumulate=accumulate)
    assert stats["steps"] == 1 and stats["images"] == 4
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("num_outputs,optimizer_name,scaled", [(1, "adam", False), (3, "adam", False),
                                                               (3, "sgd", False), (3, "sgd", True)])
def test_batch_4_equals_batch_2_accumulated_twice(num_outputs, optimizer_name, scaled):
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 64, 64, generator=generator) * 255
    masks = torch.randint(0, max(num_outputs, 2), (4, 64, 64), generator=generator)
    whole = _one_step(num_outputs, [(images, masks)], 1, optimizer_name)
    halves = _one_step(num_outputs, [(images[:2], masks[:2]), (images[2:], masks[2:])], 2, optimizer_name, scaled)
    torch.manual_seed(0)
    initial = build_gsam("tiny", num_classes=num_outputs, train_size=(64, 64)).state_dict()
    moved = max((whole[k].double() - initial[k].double()).abs().max().item() for k in whole)
    assert moved > 1e-5  # the step did change the weights, so the comparison below means something
    worst = max((whole[k].double() - halves[k].double()).abs().max().item() for k in whole)
    assert worst <= 1e-5, worst


class _RecordsNoSync(nn.Module):
    """Stands in for DistributedDataParallel: counts the backward passes run under no_sync."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.unsynced, self.calls = model, 0, 0

    @contextlib.contextmanager
    def no_sync(self):
        self.unsynced += 1
        yield

    def forward(self, x):
        self.calls += 1
        return self.model(x)


def test_only_a_windows_last_backward_synchronizes():
    net = _RecordsNoSync(build_gsam("tiny", num_classes=1, train_size=(64, 64)))
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    batch = (torch.rand(1, 3, 64, 64) * 255, torch.zeros(1, 64, 64, dtype=torch.long))
    stats = train_one_epoch(net, [batch] * 6, SegmentationLoss(1, 255), optimizer,
                            torch.amp.GradScaler("cpu", enabled=False), device=torch.device("cpu"), accumulate=3)
    assert stats["steps"] == 2 and net.calls == 6 and net.unsynced == 4


def test_incomplete_window_is_not_stepped():
    model = build_gsam("tiny", num_classes=1, train_size=(64, 64))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = (torch.rand(1, 3, 64, 64) * 255, torch.zeros(1, 64, 64, dtype=torch.long))
    stats = train_one_epoch(model, [batch] * 5, SegmentationLoss(1, 255), optimizer,
                            torch.amp.GradScaler("cpu", enabled=False), device=torch.device("cpu"), accumulate=2)
    assert stats["steps"] == 2 and stats["images"] == 4


def _config(data, out, **overrides):
    settings = dict(data=str(data), out=str(out), model="tiny", epochs=2, batch_size=2, accumulate=2, lr=1e-3,
                    workers=0, crop=(64, 64), steps_per_epoch=2, seed=5)
    return TrainConfig(**{**settings, **overrides})


def test_resume_after_a_crash_mid_window_reproduces_the_uninterrupted_run(tmp_path, synth_data, monkeypatch):
    straight = train(_config(synth_data, tmp_path / "straight"), progress=False)

    # Epoch 1 = 2 windows x 2 micro-batches x 2 images = 8 training samples read. Crash on the 11th: in
    # epoch 2, in the second micro-batch of its first window, after its first micro-batch's backward.
    reads = {"count": 0}
    original = SegmentationDataset.__getitem__

    def crashing(self, index):
        reads["count"] += self.transform is not None  # training reads only (validation has no transform)
        if reads["count"] == 11:
            raise KeyboardInterrupt("simulated crash mid-window")
        return original(self, index)

    monkeypatch.setattr(SegmentationDataset, "__getitem__", crashing)
    with pytest.raises(KeyboardInterrupt):
        train(_config(synth_data, tmp_path / "crashed"), progress=False)
    monkeypatch.setattr(SegmentationDataset, "__getitem__", original)
    assert read_gsam_checkpoint(tmp_path / "crashed" / "last.pt")["epoch"] == 1

    result = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "crashed"), "--quiet"])
    assert result.exit_code == 0, result.output
    a = read_gsam_checkpoint(straight / "last.pt")
    b = read_gsam_checkpoint(tmp_path / "crashed" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and b["train_config"]["accumulate"] == 2
    assert a["metrics"]["steps"] == b["metrics"]["steps"] == 2 and a["metrics"]["images"] == 8
    for key, value in a["model"].items():
        assert (value.double() - b["model"][key].double()).abs().max() <= 1e-6, key


def test_accumulate_larger_than_an_epoch_is_refused(tmp_path, synth_data):
    with pytest.raises(GSAMError, match="--accumulate 50"):
        train(_config(synth_data, tmp_path / "run", accumulate=50, batch_size=4), progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run directory is made
