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


def _engine(trt, logits="FLOAT", mask="INT32", image="FLOAT"):
    io = trt.TensorIOMode
    return standin_tensorrt.Engine({"image": (io.INPUT, getattr(trt.DataType, image)),
                                    "logits": (io.OUTPUT, getattr(trt.DataType, logits)),
                                    "mask": (io.OUTPUT, getattr(trt.DataType, mask))})


def test_the_runner_reads_input_and_output_types_from_the_engine(trt):
    from gsam.runtime.backends.tensorrt_engine import io_dtypes

    assert io_dtypes(_engine(trt)) == ({"image": torch.float32}, {"logits": torch.float32, "mask": torch.int32})
    assert io_dtypes(_engine(trt, logits="HALF", mask="INT64", image="UINT8")) == (
        {"image": torch.uint8}, {"logits": torch.float16, "mask": torch.int64})
    with pytest.raises(GSAMError, match="'logits' has TensorRT type FP8"):
        io_dtypes(_engine(trt, logits="FP8"))


def _runner(trt, refuse=()):
    from gsam.runtime.backends.tensorrt_engine import TensorRTSegmenter, io_dtypes

    runner = TensorRTSegmenter.__new__(TensorRTSegmenter)  # no CUDA here: bind on the CPU
    runner.profiles, runner.context = PROFILES, standin_tensorrt.Context(refuse)
    runner.torch, runner.device = torch, "cpu"
    runner.inputs, runner.outputs = io_dtypes(_engine(trt, logits="HALF"))
    runner.active_profile = -1
    return runner


def test_the_runner_binds_outputs_of_the_engines_types_and_switches_profiles_once(trt):
    runner = _runner(trt)
    image = torch.zeros(1, 3, 120, 130)
    outputs = runner.bind(1, image, stream=0)
    assert outputs["logits"].shape == (1, 3, 120, 130) and outputs["logits"].dtype == torch.float16
    assert outputs["mask"].shape == (1, 120, 130) and outputs["mask"].dtype == torch.int32
    runner.bind(1, image, stream=0)
    assert [c for c in runner.context.calls if c[0] == "set_optimization_profile_async"] == [
        ("set_optimization_profile_async", 1)]


@pytest.mark.parametrize("call, message", [
    ("set_optimization_profile_async", "refused to switch to profile 1 (1x3x97x32-1x3x256x256)"),
    ("set_input_shape", "refused input shape 1x3x120x130 in profile 1"),
    ("set_tensor_address", "refused the address of input 'image'")])
def test_the_runner_stops_in_one_line_when_tensorrt_refuses(trt, call, message):
    runner = _runner(trt, refuse={call})
    with pytest.raises(GSAMError, match=re.escape(message) + f".*{call} returned False") as err:
        runner.bind(1, torch.zeros(1, 3, 120, 130), stream=0)
    assert "\n" not in str(err.value)
    assert runner.active_profile == (-1 if call == "set_optimization_profile_async" else 1)

