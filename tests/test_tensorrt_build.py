"""What gsam does around TensorRT's answers, without a GPU: a refused timing cache is replaced, an engine
never appears without its sidecar, the runner reads its tensors' types from the engine and stops in one
line when TensorRT refuses a profile switch, a shape or an address.

TensorRT itself is a stand-in here (tests/support/standin_tensorrt.py), answering as the real one is
documented to; that gsam calls the real API correctly is checked against the real bindings of every
supported release by tests/test_tensorrt_types.py.
"""

from __future__ import annotations

import re
import sys

import pytest
import torch
from support import standin_tensorrt

from gsam.errors import GSAMError
from gsam.export.profiles import parse_profile
from gsam.export.sidecar import EngineSidecar, sidecar_path
from gsam.export.tensorrt import BuildSettings, attach_timing_cache, build_engine

PROFILES = [parse_profile("min=1x3x32x32,opt=1x3x64x64,max=1x3x96x96"),
            parse_profile("min=1x3x97x32,opt=1x3x128x128,max=1x3x256x256")]


@pytest.fixture()
def trt(monkeypatch):
    module = standin_tensorrt.new_module()
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


def _build(onnx, plan, cache=None, log=None):
    return build_engine(onnx, plan, BuildSettings(PROFILES, timing_cache=str(cache) if cache else None),
                        runners=None, log=log or (lambda s: None))


def test_a_refused_timing_cache_is_logged_and_replaced_by_a_fresh_one(trt, tiny_onnx, tmp_path):
    cache = tmp_path / "gpu0.cache"
    cache.write_bytes(b"made on another GPU")
    trt.refused_caches.add(b"made on another GPU")
    logged = []
    sidecar = _build(tiny_onnx, tmp_path / "m.plan", cache, logged.append)
    assert any("refused this timing cache" in line and str(cache) in line for line in logged)
    assert (tmp_path / "m.plan").read_bytes() == b"serialized engine"
    assert EngineSidecar.read(tmp_path / "m.plan") == sidecar and sidecar.tensorrt_version == "10.13.3.9"
    assert cache.read_bytes() == b"fresh timing cache"  # the build's own cache replaced the foreign one
    assert trt.builds[0].attached.data == b""  # the build ran with the fresh cache attached
    cache.write_bytes(b"from this GPU")  # an accepted cache is used as it is and written back
    _build(tiny_onnx, tmp_path / "m.plan", cache)
    assert trt.builds[1].attached.data == b"from this GPU" and cache.read_bytes() == b"from this GPU"


def test_attach_timing_cache_without_a_file_and_when_even_a_fresh_cache_is_refused(trt, tmp_path):
    config = trt.Builder(None).create_builder_config()
    assert attach_timing_cache(config, None).data == b"" and config.attached is not None
    assert attach_timing_cache(config, tmp_path / "missing.cache").data == b""
    trt.refused_caches.add(b"")
    with pytest.raises(GSAMError, match="refused a fresh timing cache"):
        attach_timing_cache(config, None, log=lambda s: None)


def test_no_engine_ever_appears_without_its_sidecar(trt, tiny_onnx, tmp_path, monkeypatch):
    plan = tmp_path / "m.plan"
    _build(tiny_onnx, plan)
    before = plan.read_bytes(), sidecar_path(plan).read_text()
    trt.engine_bytes = b"a newer engine"

    def broken(self):
        raise OSError("disk full")

    monkeypatch.setattr(EngineSidecar, "to_dict", broken)  # the sidecar cannot be made: no new engine either
    with pytest.raises(OSError, match="disk full"):
        _build(tiny_onnx, plan)
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    trt.engine_bytes = None  # TensorRT's build fails: nothing is written
    with pytest.raises(GSAMError, match="could not build an engine"):
        _build(tiny_onnx, plan)
    assert (plan.read_bytes(), sidecar_path(plan).read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.plan", "m.plan.json"]  # no staging left behind
    fresh = tmp_path / "new" / "m.plan"
    with pytest.raises(GSAMError):
        _build(tiny_onnx, fresh)
    assert not fresh.exists() and not sidecar_path(fresh).exists()


def _engine(trt, logits="FLOAT", mask="INT32", image="FLOAT", context_class=None, **context_options):
    io = trt.TensorIOMode
    return standin_tensorrt.Engine({"image": (io.INPUT, getattr(trt.DataType, image)),
                                    "logits": (io.OUTPUT, getattr(trt.DataType, logits)),
                                    "mask": (io.OUTPUT, getattr(trt.DataType, mask))}, context_class, **context_options)


def test_the_runner_reads_input_and_output_types_from_the_engine(trt):
    from gsam.runtime.backends.tensorrt_engine import io_dtypes

    assert io_dtypes(_engine(trt)) == ({"image": torch.float32}, {"logits": torch.float32, "mask": torch.int32})
    assert io_dtypes(_engine(trt, logits="HALF", mask="INT64", image="UINT8")) == (
        {"image": torch.uint8}, {"logits": torch.float16, "mask": torch.int64})
    with pytest.raises(GSAMError, match="'logits' has TensorRT type FP8"):
        io_dtypes(_engine(trt, logits="FP8"))


def _sidecar(tiny_onnx, gpu=None):
    from gsam.export.metadata import read_onnx_facts

    return EngineSidecar(tuple(PROFILES), read_onnx_facts(tiny_onnx), "10.13.3.9", gpu=gpu)


def _runner(trt, tiny_onnx, refuse=(), context_class=None, **context_options):
    """A runner on the CPU (no CUDA here) around a stand-in engine."""
    from gsam.runtime.backends.tensorrt_engine import TensorRTSegmenter

    engine = _engine(trt, logits="HALF", context_class=context_class, refuse=set(refuse), **context_options)
    return TensorRTSegmenter.for_engine(engine, _sidecar(tiny_onnx), torch.device("cpu"))


def test_the_runner_binds_outputs_of_the_engines_types_and_switches_profiles_once(trt, tiny_onnx):
    runner = _runner(trt, tiny_onnx)
    lane, image = runner.lane(), torch.zeros(1, 3, 120, 130)
    outputs = runner.bind(lane, 1, image)
    assert outputs["logits"].shape == (1, 3, 120, 130) and outputs["logits"].dtype == torch.float16
    assert outputs["mask"].shape == (1, 120, 130) and outputs["mask"].dtype == torch.int32
    runner.bind(lane, 1, image)
    assert [c for c in lane.context.calls if c[0] == "set_optimization_profile_async"] == [
        ("set_optimization_profile_async", 1)]


@pytest.mark.parametrize("call, message", [
    ("set_optimization_profile_async", "refused to switch to profile 1 (1x3x97x32-1x3x256x256)"),
    ("set_input_shape", "refused input shape 1x3x120x130 in profile 1"),
    ("set_tensor_address", "refused the address of input 'image'")])
def test_the_runner_stops_in_one_line_when_tensorrt_refuses(trt, tiny_onnx, call, message):
    runner = _runner(trt, tiny_onnx, refuse={call})
    lane = runner.lane()
    with pytest.raises(GSAMError, match=re.escape(message) + f".*{call} returned False") as err:
        runner.bind(lane, 1, torch.zeros(1, 3, 120, 130))
    assert "\n" not in str(err.value)
    assert lane.active_profile == (-1 if call == "set_optimization_profile_async" else 1)



# ---------------------------------------------------------------------------------------------------------------
# fp32 means fp32 (TF32 only when asked for), the GPU an engine is for, one execution context per thread


@pytest.mark.parametrize("tf32", [False, True])
def test_fp32_layers_compute_in_fp32_unless_tf32_is_asked_for(trt, tiny_onnx, tmp_path, tf32):
    """TensorRT's builder config starts with TF32 allowed; gsam's clears it, for every precision, unless the
    build asks for it, and the sidecar and the trtexec line say which."""
    from gsam.export.tensorrt import builder_config, trtexec_command

    sidecar = build_engine(tiny_onnx, tmp_path / "m.plan", BuildSettings(PROFILES, tf32=tf32), runners=None,
                           log=lambda s: None)
    assert trt.builds[0].get_flag(trt.BuilderFlag.TF32) is tf32
    assert sidecar.tf32 is tf32 and EngineSidecar.read(tmp_path / "m.plan").tf32 is tf32
    fp16 = builder_config(trt.Builder(None), BuildSettings(PROFILES, "fp16", tf32=tf32))
    assert fp16.get_flag(trt.BuilderFlag.TF32) is tf32  # the fp32 islands of an fp16 engine too
    assert ("--noTF32" in trtexec_command(tiny_onnx, "m.plan", BuildSettings(PROFILES, tf32=tf32)).split()) is not tf32


H100 = ("NVIDIA H100 80GB HBM3", (9, 0))


def _cuda_here(monkeypatch, trt, name, capability, count=2):
    """torch.cuda as a host with `count` GPUs of this kind reports it; set_device is what the stand-in TensorRT
    sees as the current device when it deserializes."""
    current = [0]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: current.__setitem__(0, index))
    trt.current_device = lambda: current[0]


def test_the_sidecar_records_the_gpu_the_engine_was_built_on(trt, tiny_onnx, tmp_path, monkeypatch):
    import json

    from gsam.export.gpu import GpuFacts

    _cuda_here(monkeypatch, trt, *H100)
    plan = tmp_path / "m.plan"
    sidecar = build_engine(tiny_onnx, plan, BuildSettings(PROFILES, device=1), runners=None, log=lambda s: None)
    assert sidecar.gpu == GpuFacts("NVIDIA H100 80GB HBM3", "9.0") == EngineSidecar.read(plan).gpu
    assert json.loads(sidecar_path(plan).read_text())["gpu"] == {"name": "NVIDIA H100 80GB HBM3",
                                                                "compute_capability": "9.0"}
    assert trt.current_device() == 1  # built on the device asked for


def test_an_engine_from_another_gpu_architecture_stops_before_tensorrt_sees_it(trt, tiny_onnx, tmp_path, monkeypatch):
    from gsam.export.gpu import GpuFacts
    from gsam.runtime.backends.tensorrt_engine import TensorRTSegmenter

    plan = tmp_path / "m.plan"
    _sidecar(tiny_onnx, GpuFacts("NVIDIA H100 80GB HBM3", "9.0")).write_with_engine(plan, b"serialized engine")
    _cuda_here(monkeypatch, trt, "NVIDIA A10", (8, 6))
    with pytest.raises(GSAMError) as err:
        TensorRTSegmenter(plan, device=1)
    assert str(err.value) == (f"{plan}: built on NVIDIA H100 80GB HBM3 (compute capability 9.0), but cuda:1 is NVIDIA "
                              "A10 (compute capability 8.6); a TensorRT engine does not move to another GPU "
                              "architecture: rebuild it on this GPU with `gsam export tensorrt`")
    assert trt.calls == []  # never deserialized
    with pytest.raises(GSAMError, match="cuda:2: this machine has 2 CUDA device"):
        TensorRTSegmenter(plan, device=2)


def test_the_runner_makes_its_device_current_before_deserializing(trt, tiny_onnx, tmp_path, monkeypatch):
    """Another board of the same architecture loads (TensorRT warns, gsam does not refuse), on the device asked
    for: on a multi-GPU host TensorRT deserializes onto the current device."""
    from gsam.export.gpu import GpuFacts
    from gsam.runtime.backends.tensorrt_engine import TensorRTSegmenter

    plan = tmp_path / "m.plan"
    _sidecar(tiny_onnx, GpuFacts("NVIDIA H100 80GB HBM3", "9.0")).write_with_engine(plan, b"serialized engine")
    _cuda_here(monkeypatch, trt, "NVIDIA H100 PCIe", (9, 0))
    trt.engine = _engine(trt)
    runner = TensorRTSegmenter(plan, device=1)
    assert trt.calls == [("deserialize_cuda_engine", 1)] and runner.device == torch.device("cuda", 1)


class NotReentrant(standin_tensorrt.Context):
    """An execution context as TensorRT documents it: one thread at a time. A request binds its shape and
    addresses, then executes; another thread's call in between (or two executions at once) is a clash, which
    on a GPU is a wrong output, not an error."""

    def __init__(self, clashes: list, **options) -> None:
        super().__init__(**options)
        self.clashes, self.owner = clashes, None

    def _answer(self, call, *args):
        import threading

        me = threading.get_ident()
        if call == "set_optimization_profile_async" or (call == "set_input_shape" and self.owner is None):
            self.owner = me
        elif self.owner != me:
            self.clashes.append(call)
        if call == "execute_async_v3":
            import time

            time.sleep(0.002)  # the kernels run; a thread sharing the context rebinds meanwhile
            self.owner = None
        return super()._answer(call, *args)


def test_bench_threads_sharing_one_runner_each_execute_on_their_own_context(trt, tiny_onnx):
    """`gsam bench` shares one tensorrt runner between its threads: each thread gets its own execution context
    (and stream), so no request's bindings are overwritten by another's before it executes."""
    import numpy as np

    from gsam.bench.harness import BenchPlan, run_case

    clashes: list[str] = []
    runner = _runner(trt, tiny_onnx, context_class=NotReentrant, clashes=clashes)
    images = np.zeros((1, 3, 120, 130), np.float32)
    timing = run_case(lambda: runner, images, BenchPlan([(120, 130)], warmup=2, iters=60), concurrency=4, owned=False)
    assert timing.errors == 0 and len(timing.latencies_ms) == 60
    assert clashes == [] and len(runner.engine.contexts) == 4


def test_a_tensorrt_whose_libraries_do_not_load_says_so(tmp_path, monkeypatch):
    """PyPI's tensorrt-*-libs are placeholders for NVIDIA's index: the bindings install, libnvinfer does not."""
    from gsam.export.tensorrt import require_tensorrt

    package = tmp_path / "site" / "tensorrt"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise OSError('libnvinfer.so.10: cannot open shared object file: No such "
                                         "file or directory')\n")
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(GSAMError) as err:
        require_tensorrt()
    message = str(err.value)
    assert message.startswith("TensorRT is installed but its libraries do not load (libnvinfer.so.10: cannot open "
                              "shared object file") and "--extra-index-url https://pypi.nvidia.com" in message
