"""GPU tier (pytest -m gpu): CUDA training step, TensorRT engines, CUDA/TensorRT execution providers.

Skipped with the reason when no CUDA device or TensorRT is present.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from gsam.export.profiles import parse_profile
from gsam.runtime.backends import load_backend

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
needs_tensorrt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                                    reason="TensorRT is not installed (pip install 'gsam[gpu]' on a GPU machine)")


@needs_cuda
@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_cuda_training_step(tmp_path, synth_data, amp):
    from gsam.train.config import TrainConfig
    from gsam.train.trainer import train

    cfg = TrainConfig(data=str(synth_data), out=str(tmp_path / amp), model="tiny", epochs=1, batch_size=2,
                      workers=0, crop=(64, 64), steps_per_epoch=2, device="cuda", amp=amp)
    assert (train(cfg, progress=False) / "last.pt").is_file()


TWO_PROFILES = ["min=1x3x32x32,opt=1x3x128x128,max=2x3x256x256", "min=1x3x256x256,opt=1x3x512x512,max=1x3x768x768"]
REQUESTS = [(2, 3, 97, 130), (1, 3, 32, 255), (1, 3, 300, 500), (1, 3, 768, 257)]  # two from each profile


@needs_cuda
@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_two_profiles_match_onnxruntime(tmp_path, tiny_onnx, precision):
    """Strongly typed engines from the default (dynamo) export; fp16 is converted through the export gate."""
    from gsam.export.tensorrt import BuildSettings, build_engine

    if precision == "fp16" and importlib.util.find_spec("gsam.export.precision") is None:
        pytest.skip("gsam.export.precision (fp16 conversion with fp32 islands) is not on this branch")
    profiles = [parse_profile(p) for p in TWO_PROFILES]
    sidecar = build_engine(tiny_onnx, tmp_path / "tiny.plan", BuildSettings(profiles, precision), log=lambda s: None)
    assert sidecar["strongly_typed"] and sidecar["precision"] == precision
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
def test_onnxruntime_cuda_and_tensorrt_providers(tmp_path, tiny_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime here has no CUDA provider (install onnxruntime-gpu)")
    onnx_path = tiny_onnx
    images = np.random.default_rng(0).uniform(0, 255, (1, 3, 97, 130)).astype(np.float32)
    want = load_backend("onnxruntime", onnx_path)(images)["logits"]
    got = load_backend("onnxruntime", onnx_path, providers="cuda")(images)["logits"]
    assert np.abs(got - want).max() / np.abs(want).max() <= 1e-3
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        profiles = [parse_profile("min=1x3x32x32,opt=1x3x128x128,max=1x3x256x256")]
        got = load_backend("onnxruntime", onnx_path, providers="tensorrt", profiles=profiles,
                           cache_dir=str(tmp_path / "cache"))(images)["logits"]
        assert np.abs(got - want).max() / np.abs(want).max() <= 1e-3
