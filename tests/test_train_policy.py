"""Without SAM weights the whole model trains; bf16 autocast runs on the CPU."""

from __future__ import annotations

from gsam.model.checkpoint import load_gsam_checkpoint
from gsam.train.config import TrainConfig
from gsam.train.trainer import train


def test_random_vit_trains_too_under_cpu_bf16(tmp_path, synth_data, capsys):
    cfg = TrainConfig(data=str(synth_data), out=str(tmp_path / "run"), model="tiny", epochs=1, batch_size=2,
                      lr=1e-2, workers=0, crop=(64, 64), steps_per_epoch=2, device="cpu", amp="bf16")
    run = train(cfg, progress=False)
    assert "every parameter trains" in capsys.readouterr().err
    model, payload = load_gsam_checkpoint(run / "last.pt")
    optimized = payload["optimizer"]["param_groups"][0]["params"]
    assert len(optimized) == len(list(model.parameters()))  # the ViT's weights are in the optimizer too
    assert len(payload["optimizer"]["state"]) == len(optimized)  # and every one of them got a step
