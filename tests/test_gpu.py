"""GPU tier (pytest -m gpu): CUDA training steps, torch inference on CUDA, TensorRT engines, the CUDA and
TensorRT execution providers of onnxruntime.

Each test is skipped with the reason when what it needs is absent (no CUDA device; no TensorRT; onnxruntime
without its CUDA provider; onnxruntime, PyYAML or torchvision not installed), and needs nothing else. The
module imports only torch, numpy, pytest and gsam modules that import nothing more, so on a machine with
torch, pytest and segment-anything alone it collects, and every test says why it skips. Fixtures are asked
for only after a test's checks pass (request.getfixturevalue), so a skipped test builds nothing.
`make gpu-check` runs these and writes their outcomes into its report.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsam.export.profiles import parse_profile

pytestmark = pytest.mark.gpu


def need_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")


def need(module: str, why: str):
    """The module, or a skip naming it and what it is for."""
    return pytest.importorskip(module, reason=f"{module} is not importable ({why})", exc_type=ImportError)


def need_tensorrt() -> None:
    need("tensorrt", "TensorRT: pip install 'gsam[gpu]' --extra-index-url https://pypi.nvidia.com on a GPU machine")


def need_export() -> None:
    """What exporting the tiny model (the tiny_onnx fixture) and comparing with onnxruntime take."""
    need("onnxruntime", "the export is verified in onnxruntime")
    need("yaml", "PyYAML: gsam's run files")
    need("torchvision", "the tiny model's CNN branch")


def need_ort_cuda():
    ort = need("onnxruntime", "onnxruntime-gpu: the CUDA provider")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime here has no CUDA provider (install onnxruntime-gpu[cuda,cudnn])")
    return ort


@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_cuda_training_step(tmp_path, request, amp):
    need_cuda()
    need("yaml", "PyYAML: the run's config.yaml")
    need("torchvision", "the model's CNN branch")
    from gsam.train.config import TrainConfig
    from gsam.train.trainer import train

    cfg = TrainConfig(data=str(request.getfixturevalue("synth_data")), out=str(tmp_path / amp), model="tiny",
                      epochs=1, batch_size=2, workers=0, crop=(64, 64), steps_per_epoch=2, device="cuda", amp=amp)
    assert (train(cfg, progress=False) / "last.pt").is_file()


@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_torch_on_cuda_agrees_with_the_cpu(request, amp):
    """The tiny model on CUDA (fp32, which may use TF32 kernels, or autocast to bf16 / fp16) gives the CPU's
    fp32 masks at sizes that are not multiples of the window or the stride (bf16 autocast on the CPU
    agrees on 99.6% of pixels, so 99% leaves room for near-ties of random weights)."""
    need_cuda()
    need("torchvision", "the model's CNN branch")
    import copy

    from gsam.amp import autocast

    tiny_model = request.getfixturevalue("tiny_model")
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


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_two_profiles_match_onnxruntime(tmp_path, request, precision):
    """Strongly typed engines from the default (dynamo) export; fp16 is converted through the export gate.
    fp32 builds without TF32, so it agrees with onnxruntime's fp32 to 1e-3. The runner switches between both
    profiles, reading the engine's own I/O types; the sidecar names this GPU."""
    need_cuda()
    need_tensorrt()
    need_export()
    from gsam.export.tensorrt import BuildSettings, build_engine
    from gsam.runtime.backends import gate_runners, load_backend

    tiny_onnx = request.getfixturevalue("tiny_onnx")
    profiles = [parse_profile(p) for p in TWO_PROFILES]
    sidecar = build_engine(tiny_onnx, tmp_path / "tiny.plan", BuildSettings(profiles, precision),
                           runners=gate_runners(), log=lambda s: None)
    assert sidecar.precision == precision and (tmp_path / "tiny.plan.json").is_file() and not sidecar.tf32
    assert sidecar.gpu is not None and sidecar.gpu.name == torch.cuda.get_device_name(0)
    engine, reference = load_backend("tensorrt", tmp_path / "tiny.plan"), load_backend("onnxruntime", tiny_onnx)
    rng = np.random.default_rng(0)
    for shape in REQUESTS:
        images = rng.uniform(0, 255, shape).astype(np.float32)
        got, want = engine(images), reference(images)
        if precision == "fp32":
            assert np.abs(got["logits"] - want["logits"]).max() / np.abs(want["logits"]).max() <= 1e-3
        else:
            assert (got["mask"] == want["mask"]).mean() >= 0.995, shape


@pytest.mark.parametrize("concurrency", [4])
def test_tensorrt_runner_shared_by_threads_gives_each_its_own_answer(tmp_path, request, concurrency):
    """gsam bench's case: one runner, several threads, different images; each gets the output of its own."""
    need_cuda()
    need_tensorrt()
    need_export()
    from concurrent.futures import ThreadPoolExecutor

    from gsam.export.tensorrt import BuildSettings, build_engine
    from gsam.runtime.backends import gate_runners, load_backend

    tiny_onnx = request.getfixturevalue("tiny_onnx")
    build_engine(tiny_onnx, tmp_path / "tiny.plan", BuildSettings([parse_profile(TWO_PROFILES[0])]),
                 runners=gate_runners(), log=lambda s: None)
    engine = load_backend("tensorrt", tmp_path / "tiny.plan")
    rng = np.random.default_rng(1)
    batches = [rng.uniform(0, 255, (1, 3, 97, 130)).astype(np.float32) for _ in range(concurrency)]
    alone = [engine(b)["logits"] for b in batches]
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(5):
            together = list(pool.map(lambda b: engine(b)["logits"], batches))
            for a, t in zip(alone, together):
                assert np.array_equal(a, t)


def test_a_timing_cache_is_written_and_reused(tmp_path, request):
    need_cuda()
    need_tensorrt()
    need_export()
    from gsam.export.tensorrt import BuildSettings, build_engine
    from gsam.runtime.backends import gate_runners

    tiny_onnx = request.getfixturevalue("tiny_onnx")
    settings = BuildSettings([parse_profile(TWO_PROFILES[0])], timing_cache=str(tmp_path / "t.cache"))
    build_engine(tiny_onnx, tmp_path / "a.plan", settings, runners=gate_runners(), log=lambda s: None)
    assert (tmp_path / "t.cache").stat().st_size > 0
    logged: list[str] = []
    build_engine(tiny_onnx, tmp_path / "b.plan", settings, runners=gate_runners(), log=logged.append)
    assert not any("refused" in line for line in logged), logged


def test_onnxruntime_cuda_and_tensorrt_providers(tmp_path, request):
    need_cuda()
    ort = need_ort_cuda()
    need_export()
    from gsam.runtime.backends import load_backend

    tiny_onnx = request.getfixturevalue("tiny_onnx")
    images = np.random.default_rng(0).uniform(0, 255, (1, 3, 97, 130)).astype(np.float32)
    want = load_backend("onnxruntime", tiny_onnx)(images)["logits"]
    got = load_backend("onnxruntime", tiny_onnx, providers="cuda")(images)["logits"]
    assert np.abs(got - want).max() / np.abs(want).max() <= 1e-3
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        profiles = [parse_profile("min=1x3x32x32,opt=1x3x128x128,max=1x3x256x256")]
        got = load_backend("onnxruntime", tiny_onnx, providers="tensorrt", profiles=profiles,
                           cache_dir=str(tmp_path / "cache"))(images)["logits"]
        assert np.abs(got - want).max() / np.abs(want).max() <= 1e-3
