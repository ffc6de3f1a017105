"""Choices made by what the machine in front of gsam measures: amp, the int8 scheme, the probe cache, gsam doctor."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from gsam import machine
from gsam.cli import cli
from gsam import amp as amp_module

CPU = torch.device("cpu")


@pytest.fixture
def probe_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GSAM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "probes.json"


def _pretend_cpu(monkeypatch, native: bool, speedup: float) -> None:
    monkeypatch.setattr(machine, "torch_native_bf16", lambda: native)
    monkeypatch.setattr(machine, "cpu_bf16_speedup", lambda: {"speedup": speedup})


@pytest.mark.parametrize("native, speedup, mode, words", [
    (False, 1 / 12, "off", "no native bf16 kernels; bf16 measured 12.0x slower than fp32"),  # AVX2 only
    (True, 2.6, "bf16", "native bf16 kernels; bf16 measured 2.6x faster"),  # avx512_bf16 / AMX
    (True, 0.9, "off", "bf16 measured 1.1x slower"),  # native, yet slower on this step: fp32
    (False, 1.5, "bf16", "no native bf16 kernels; bf16 measured 1.5x faster"),  # the probe decides
    (False, 1.2, "off", "1.2x faster"),  # under BF16_MIN_SPEEDUP without native kernels
])
def test_amp_auto_on_a_cpu_follows_the_measurement(monkeypatch, native, speedup, mode, words):
    _pretend_cpu(monkeypatch, native, speedup)
    choice = amp_module.choose_amp("auto", CPU)
    assert choice.mode == mode and words in choice.reason and choice.warning is None
    assert choice.line() == f"amp: {mode} ({choice.reason})"


def test_explicit_bf16_on_a_slow_cpu_runs_with_a_warning_that_says_how_slow(monkeypatch):
    _pretend_cpu(monkeypatch, False, 1 / 12)
    choice = amp_module.choose_amp("bf16", CPU)
    assert choice.mode == "bf16" and "12.0x slower" in choice.warning and "--amp auto runs fp32" in choice.warning
    assert amp_module.choose_amp("off", CPU).mode == "off"
    with pytest.raises(Exception, match="needs a CUDA device"):
        amp_module.choose_amp("fp16", CPU)


def test_amp_auto_on_this_cpu_matches_its_own_probe(probe_cache):
    probe = machine.cpu_bf16_speedup()
    assert probe["fp32_ms"] > 0 and probe["bf16_ms"] > 0
    worth = probe["speedup"] >= amp_module.BF16_MIN_SPEEDUP or (machine.torch_native_bf16() and probe["speedup"] >= 1)
    assert amp_module.choose_amp("auto", CPU).mode == ("bf16" if worth else "off")


@pytest.mark.parametrize("speedup, mode", [(1.3, "bf16"), (0.93, "off")])
def test_training_keeps_auto_bf16_only_if_the_models_own_step_is_faster(monkeypatch, probe_cache, speedup, mode):
    """A native-bf16 CPU whose probe says bf16 can still run a small model's step faster in fp32 (CPU A, tiny)."""
    monkeypatch.setattr(amp_module, "measure_step_bf16_speedup", lambda *args: {"speedup": speedup})
    probe_says_bf16 = amp_module.AmpChoice("bf16", "this CPU has native bf16 kernels; bf16 measured 1.4x faster")
    choice = amp_module.confirm_on_training_step(probe_says_bf16, "auto", CPU, model=torch.nn.Identity(),
                                                 batch=(1, 8, 8), loss_fn=None, key="pretend")
    assert choice.mode == mode and "this model's training step" in choice.reason
    asked = amp_module.AmpChoice("bf16", "as asked")  # an explicit --amp bf16 is never second-guessed
    assert amp_module.confirm_on_training_step(asked, "bf16", CPU, model=None, batch=(1, 8, 8),
                                                 loss_fn=None, key="x") is asked


def test_a_resumed_run_keeps_the_amp_mode_it_was_started_in(monkeypatch):
    """Measured again on a busier machine, auto could flip, and the resumed steps would not replay the run."""
    from gsam.train import trainer
    from gsam.train.config import TrainConfig

    monkeypatch.setattr(trainer, "confirm_on_training_step", lambda *a, **k: pytest.fail("measured again on resume"))
    probe = amp_module.AmpChoice("off", "this CPU has native bf16 kernels; ...")
    cfg = TrainConfig(data="d", out="o", amp="auto")
    kept = trainer._training_amp(probe, cfg, CPU, model=None, crop=(8, 8), loss_fn=None, checkpoint={"amp": "bf16"})
    assert kept.mode == "bf16" and "started in" in kept.reason


def test_the_training_step_probe_leaves_the_model_as_it_was():
    from gsam.model import build_gsam
    from gsam.train.losses import SegmentationLoss

    model = build_gsam("tiny", num_classes=3, train_size=(64, 64)).train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    result = amp_module.measure_step_bf16_speedup(model, (2, 64, 64), SegmentationLoss(3, 255), repeats=1)
    assert result["fp32_ms"] > 0 and result["bf16_ms"] > 0
    after = model.state_dict()  # weights and BatchNorm running statistics untouched, no gradients left
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(p.grad is None for p in model.parameters())


def test_a_probe_is_measured_once_per_machine_and_not_kept_when_measured_under_load(probe_cache, monkeypatch):
    calls = []

    def measure():
        calls.append(1)
        return {"value": len(calls)}

    monkeypatch.setattr(machine, "machine_is_busy", lambda: True)
    assert machine.cached_probe("test-probe", measure)["value"] == 1
    assert machine.cached_probe("test-probe", measure)["value"] == 2  # busy: not cached, measured again
    monkeypatch.setattr(machine, "machine_is_busy", lambda: False)
    assert machine.cached_probe("test-probe", measure) == {"value": 3}
    assert machine.cached_probe("test-probe", measure) == {"value": 3} and len(calls) == 3
    saved = json.loads(probe_cache.read_text())
    (key,) = saved
    assert key.startswith("test-probe|") and "torch" in key and "threads" in key
    probe_cache.write_text("not json")  # a broken cache is measured again, never an error
    assert machine.cached_probe("test-probe", measure) == {"value": 4}


def test_cpu_facts_name_the_kernel_family():
    facts = machine.CpuFacts("X", "25", "1", 2, ("avx2", "fma"))
    assert facts.kind == "AVX2" and not facts.int8_dot_product and not facts.bf16_native
    wide = machine.CpuFacts("Y", "6", "143", 2, ("avx2", "avx512f", "avx512_bf16", "avx512_vnni"))
    assert wide.kind == "AVX-512+bf16+VNNI" and wide.int8_dot_product and wide.bf16_native
    assert machine.CpuFacts("Z", "6", "207", 2, ("avx512f", "amx_tile", "amx_int8")).kind == "AMX"
    here = machine.cpu_facts()
    assert here.cores >= 1 and set(here.flags) <= set(machine.FLAGS_THAT_MATTER)


def test_int8_auto_takes_tensorrt_for_an_engine_and_the_measured_faster_scheme_for_onnxruntime(monkeypatch):
    from gsam.export import int8_choice

    assert int8_choice.choose_int8_scheme("auto", "tensorrt")[0] == "tensorrt"
    assert int8_choice.choose_int8_scheme("cpu", "tensorrt") == ("cpu", "as asked")
    for timings, expected in (({"cpu": 0.42, "tensorrt": 0.89}, "cpu"), ({"cpu": 0.68, "tensorrt": 0.69}, "tensorrt"),
                              ({"cpu": 1.1, "tensorrt": 0.7}, "tensorrt")):
        monkeypatch.setattr(int8_choice, "int8_scheme_timings", lambda t=timings: t)
        scheme, reason = int8_choice.choose_int8_scheme("auto")
        assert scheme == expected and f"{timings['cpu']:.2f}x" in reason, (timings, reason)


def test_the_int8_probe_times_both_schemes_against_fp32(probe_cache):
    from gsam.export.int8_choice import int8_scheme_timings

    timings = int8_scheme_timings()
    assert timings["fp32_ms"] > 0 and timings["cpu"] > 0 and timings["tensorrt"] > 0


def test_doctor_reports_the_machine_and_its_choices_with_reasons(probe_cache, monkeypatch):
    measured = machine.cpu_bf16_speedup()  # once: a busy machine keeps no cache, and a second probe may differ
    monkeypatch.setattr(machine, "cpu_bf16_speedup", lambda: measured)
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["cpu"]["kind"] == machine.cpu_facts().kind and "avx2" in report["cpu"]["flags"]
    assert report["torch"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "CPUExecutionProvider" in report["onnxruntime"]["providers"]
    choices = report["choices"]
    assert choices["amp"]["value"] == amp_module.choose_amp("auto", CPU).mode and "bf16" in choices["amp"]["reason"]
    assert choices["int8_scheme"]["value"] in ("cpu", "tensorrt") and "measured" in choices["int8_scheme"]["reason"]
    assert {"threads", "backend", "device"} <= set(choices)
    text = CliRunner().invoke(cli, ["doctor"])
    assert text.exit_code == 0 and "gsam chooses here" in text.output
    assert f"amp            {choices['amp']['value']} (" in text.output
