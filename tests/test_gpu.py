"""GPU tier (pytest -m gpu): CUDA training steps, torch inference on CUDA, TensorRT engines, the CUDA and
TensorRT execution providers of onnxruntime.

Each test is skipped with the reason when what it needs is absent (no CUDA device; no TensorRT; onnxruntime
without its CUDA provider), and needs nothing else: the TensorRT and provider tests build the tiny ONNX
export only when they can run. `make gpu-check` runs these and writes their outcomes into its report.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from gsam.export.profiles import parse_profile
from gsam.runtime.backends import gate_runners, load_backend

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
needs_tensorrt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                                    reason="TensorRT is not installed (pip install 'gsam[gpu]' on a GPU machine)")


def _onnxruntime_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


needs_ort_cuda = pytest.mark.skipif("CUDAExecutionProvider" not in _onnxruntime_providers(),
                                    reason="onnxruntime here has no CUDA provider (install onnxruntime-gpu)")


@needs_cuda
@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_cuda_training_step(tmp_path, synth_data, amp):
    from gsam.train.config import TrainConfig
    from gsam.train.trainer import train

    cfg = TrainConfig(data=str(synth_data), out=str(tmp_path / amp), model="tiny", epochs=1, batch_size=2,
                      workers=0, crop=(64, 64), steps_per_epoch=2, device="cuda", amp=amp)
    assert (train(cfg, progress=False) / "last.pt").is_file()


@needs_cuda
@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_torch_on_cuda_agrees_with_the_cpu(tiny_model, amp):
    """The tiny model on CUDA (fp32, which may use TF32 kernels, or autocast to bf16 / fp16) gives the CPU's
    fp32 masks at sizes that are not multiples of the window or the stride (bf16 autocast on the CPU
    agrees on 99.6% of pixels, so 99% leaves room for near-ties of random weights)."""
    import copy

    from gsam.train.amp import autocast

    sizes = [(70, 90), (97, 130)]
    images = [torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0)) * 255 for size in sizes]
    model = copy.deepcopy(tiny_model).to("cuda")
    with torch.inference_mode():
        want = [tiny_model(x).argmax(1) for x in images]
        with autocast(torch.device("cuda"), amp):
            got = [model(x.cuda()).float().argmax(1).cpu() for x in images]
    for g, w in zip(got, want):
        assert (g == w).float().mean() >= (0.999 if amp == "off" else 0.99), (tuple(g.shape), amp)


TWO_PROFILES = ["min=1x3x32x32,opt=1x3x128x128,max=2x3x256x256", "min=1x3x257x32,opt=1x3x512x512,max=1x3x768x768"]
REQUESTS = [(2, 3, 97, 130), (1, 3, 32, 255), (1, 3, 300, 500), (1, 3, 768, 257)]  # two from each profile


@needs_cuda
@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_two_profiles_match_onnxruntime(tmp_path, tiny_onnx, precision):
    """Strongly typed engines from the default (dynamo) export; fp16 is converted through the export gate.
    The runner switches between both profiles, reading the engine's own I/O types."""
    from gsam.export.tensorrt import BuildSettings, build_engine

    profiles = [parse_profile(p) for p in TWO_PROFILES]
    sidecar = build_engine(tiny_onnx, tmp_path / "tiny.plan", BuildSettings(profiles, precision),
                           runners=gate_runners(), log=lambda s: None)
    assert sidecar.precision == precision and (tmp_path / "tiny.plan.json").is_file()
    engine, reference = load_backend("tensorrt", tmp_path / "tiny.plan"), load_backend("onnxruntime", tiny_onnx)
    rng = np.random.default_rng(0)
    for shape in REQUESTS:
        images = rng.uniform(0, 255, shape).astype(np.float32)
        got, want = engine(images), reference(images)
        if precision == "fp32":
            assert np.abs(got["logits"] - want["logits"]).max() / np.abs(want["logits"]).max() <= 1e-3
        else:
            assert (got["mask"] == want["mask"]).mean() >= 0.995, shape


@needs_cuda
@needs_tensorrt
def test_a_timing_cache_is_written_and_reused(tmp_path, tiny_onnx):
    from gsam.export.tensorrt import BuildSettings, build_engine

    settings = BuildSettings([parse_profile(TWO_PROFILES[0])], timing_cache=str(tmp_path / "t.cache"))
    build_engine(tiny_onnx, tmp_path / "a.plan", settings, runners=gate_runners(), log=lambda s: None)
    assert (tmp_path / "t.cache").stat().st_size > 0
    logged: list[str] = []
    build_engine(tiny_onnx, tmp_path / "b.plan", settings, runners=gate_runners(), log=logged.append)
    assert not any("refused" in line for line in logged), logged


@needs_cuda
@needs_ort_cuda
def test_onnxruntime_cuda_and_tensorrt_providers(tmp_path, tiny_onnx):
    images = np.random.default_rng(0).uniform(0, 255, (1, 3, 97, 130)).astype(np.float32)
    want = load_backend("onnxruntime", tiny_onnx)(images)["logits"]
    got = load_backend("onnxruntime", tiny_onnx, providers="cuda")(images)["logits"]
    assert np.abs(got - want).max() / np.abs(want).max() <= 1e-3
    if "TensorrtExecutionProvider" in _onnxruntime_providers():
        profiles = [parse_profile("min=1x3x32x32,opt=1x3x128x128,max=1x3x256x256")]
        got = load_backend("onnxruntime", tiny_onnx, providers="tensorrt", profiles=profiles,
                           cache_dir=str(tmp_path / "cache"))(images)["logits"]
        assert np.abs(got - want).max() / np.abs(want).max() <= 1e-3
