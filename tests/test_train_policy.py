"""Without SAM weights the whole model trains; bf16 autocast runs on the CPU (a few steps of the tiny model)."""

from __future__ import annotations

import torch

from gsam.model.checkpoint import load_gsam_checkpoint
from gsam.train.config import TrainConfig
from gsam.train.trainer import train


def test_random_vit_trains_too(tmp_path, synth_data, capsys):
    cfg = TrainConfig(data=str(synth_data), out=str(tmp_path / "run"), model="tiny", epochs=1, batch_size=2,
                      lr=1e-2, workers=0, crop=(64, 64), steps_per_epoch=2, device="cpu")
    run = train(cfg, progress=False)
    assert "every parameter trains" in capsys.readouterr().err
    model, payload = load_gsam_checkpoint(run / "last.pt")
    optimized = payload["optimizer"]["param_groups"][0]["params"]
    assert len(optimized) == len(list(model.parameters()))  # the ViT's weights are in the optimizer too
    assert len(payload["optimizer"]["state"]) == len(optimized)  # and every one of them got a step
    assert payload["train_config"]["amp"] == "auto"


def test_one_bf16_autocast_step_on_the_cpu_moves_fp32_weights():
    """bf16 on a CPU, whatever its speed there: two steps of the tiny model at 64x64 keep fp32 weights that
    move and stay finite."""
    from gsam.amp import grad_scaler
    from gsam.model import build_gsam
    from gsam.train.engine import train_one_epoch
    from gsam.train.losses import SegmentationLoss

    torch.manual_seed(0)
    model = build_gsam("tiny", num_classes=3, train_size=(64, 64)).requires_grad_(True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [(torch.rand(2, 3, 64, 64) * 255, torch.randint(0, 3, (2, 64, 64))) for _ in range(2)]
    device = torch.device("cpu")
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    seen = []
    linear.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    stats = train_one_epoch(model, batches, SegmentationLoss(3, 255), torch.optim.Adam(model.parameters(), 1e-3),
                            grad_scaler(device, "bf16"), device=device, amp="bf16")
    assert stats["steps"] == 2 and torch.isfinite(torch.tensor(stats["train_loss"]))
    assert seen and set(seen) == {torch.bfloat16}  # the matmuls really ran in bf16
    after = model.state_dict()
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(v, before[k]) for k, v in after.items())
