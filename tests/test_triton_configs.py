"""Configs of gsam_trt and gsam_image checked against Triton's schema and the tensorrt backend's rules
(docs/facts.md, "Triton's tensorrt backend"): batching only where every batch fits a profile, one
instance group listing every profile, per-profile context memory, CUDA graphs the backend can launch,
and gsam_image's compute model."""

from __future__ import annotations

import json

import pytest

from gsam.deploy.triton.compute_target import choose_compute
from gsam.deploy.triton.repository import config_text, image_config, tensorrt_config
from gsam.errors import GSAMError
from gsam.export.metadata import read_onnx_facts
from gsam.export.profiles import parse_profile
from gsam.runtime.serving.model_config import parse_config, read_model_config

ONE = [parse_profile("min=1x3x64x64,opt=1x3x128x128,max=1x3x256x256")]
TWO = [parse_profile("min=1x3x64x64,opt=1x3x128x128,max=1x3x255x255"),
       parse_profile("min=1x3x256x256,opt=1x3x384x384,max=1x3x512x512")]
BATCHED = [parse_profile("min=1x3x64x64,opt=2x3x128x128,max=4x3x255x255"),
           parse_profile("min=1x3x256x256,opt=1x3x384x384,max=2x3x512x512")]
OPT_ABOVE_MAX_BATCH = [parse_profile("min=1x3x64x64,opt=4x3x128x128,max=4x3x255x255"),
                       parse_profile("min=1x3x256x256,opt=1x3x384x384,max=2x3x512x512")]


def _roundtrip(config):
    """The config as Triton reads it: written with protobuf's text format, parsed with its schema."""
    return parse_config(config_text(config, "test"))


def _check_backend_rules(config, profiles):
    """What the tensorrt backend checks at load and run time, for gsam_trt's single image input."""
    assert [list(g.profile) for g in config.instance_group] == [[str(i) for i in range(len(profiles))]]
    image = config.input[0]
    mbs = config.max_batch_size
    if mbs:
        assert list(image.dims) == [3, -1, -1]  # the batch axis belongs to Triton
        assert config.HasField("dynamic_batching")
        # every batch 1..mbs at every height/width a profile allows fits that profile
        assert all(p.min[0] == 1 and p.max[0] >= mbs for p in profiles)
    else:
        assert list(image.dims) == [-1, 3, -1, -1]
    for warmup in config.model_warmup:
        dims = list(warmup.inputs["image"].dims)
        assert -1 not in dims and (1 <= warmup.batch_size <= mbs if mbs else warmup.batch_size == 1)
        sent = (warmup.batch_size, *dims) if mbs else tuple(dims)  # what Triton sends
        assert any(p.contains(sent) for p in profiles)
    for spec in config.optimization.cuda.graph_spec:
        assert mbs and 1 <= spec.batch_size <= mbs
        for profile in profiles:  # the backend tries every spec on every listed profile's context
            assert profile.contains(captured_shape(spec, profile)), (spec, profile.name)


def captured_shape(spec, profile) -> tuple[int, ...]:
    """The input shape Triton's tensorrt backend sets on a profile's context to capture a graph spec
    (instance_state.cc, SetCudaGraphShape): the spec's input dims after its batch size, or, for a spec without
    input dims, the profile's own opt shape with the spec's batch size."""
    dims = tuple(spec.input["image"].dim) if "image" in spec.input else tuple(profile.opt[1:])
    return (spec.batch_size, *dims)


def test_one_profile_keeps_batch_in_the_request_and_the_default_memory_strategy(tiny_onnx):
    config = _roundtrip(tensorrt_config("gsam_trt", read_onnx_facts(tiny_onnx), ONE))
    _check_backend_rules(config, ONE)
    assert config.max_batch_size == 0 and "execution_context_allocation_strategy" not in config.parameters


def test_two_profiles_allocate_context_memory_on_profile_change(tiny_onnx):
    config = _roundtrip(tensorrt_config("gsam_trt", read_onnx_facts(tiny_onnx), TWO))
    _check_backend_rules(config, TWO)
    assert config.parameters["execution_context_allocation_strategy"].string_value == "ON_PROFILE_CHANGE"
    assert len(config.model_warmup) == 2


def test_batch_capable_profiles_get_the_dynamic_batcher_up_to_the_smallest_max_batch(tiny_onnx):
    config = _roundtrip(tensorrt_config("gsam_trt", read_onnx_facts(tiny_onnx), BATCHED))
    _check_backend_rules(config, BATCHED)
    assert config.max_batch_size == 2


def _sent_warmups(config) -> dict[str, tuple[int, ...]]:
    """Warm-up name -> the tensor shape Triton sends for it, read back from the config."""
    batched = config.max_batch_size > 0
    return {w.name: ((w.batch_size, *w.inputs["image"].dims) if batched else tuple(w.inputs["image"].dims))
            for w in config.model_warmup}


@pytest.mark.parametrize("profiles", [TWO, BATCHED, OPT_ABOVE_MAX_BATCH], ids=["unbatched", "batched", "opt-batch-4"])
def test_each_warmup_sends_the_shape_it_names_and_reaches_only_its_profile(tiny_onnx, profiles):
    """`warmup_profile_0_2x3x128x128` sends 2x3x128x128 (the batch in batch_size when Triton batches), at
    most max_batch_size, and that shape lies in profile 0 alone."""
    config = _roundtrip(tensorrt_config("gsam_trt", read_onnx_facts(tiny_onnx), profiles))
    sent = _sent_warmups(config)
    assert len(sent) == len(profiles)
    for i, (name, shape) in enumerate(sent.items()):
        assert name == f"warmup_profile_{i}_{'x'.join(map(str, shape))}"
        assert [j for j, p in enumerate(profiles) if p.contains(shape)] == [i]
        assert not config.max_batch_size or shape[0] <= config.max_batch_size
    if profiles is OPT_ABOVE_MAX_BATCH:  # opt batch 4 above max_batch_size 2: the nearest shape Triton can send
        assert sent["warmup_profile_0_2x3x128x128"] == (2, 3, 128, 128)


def test_cuda_graphs_at_each_profiles_opt_shape_and_only_with_batching(tiny_onnx):
    """Each graph spec is captured in every profile at that profile's own opt shape: none names a shape that
    another profile refuses (which the backend logs as `Failed to set cuda graph shape`)."""
    facts = read_onnx_facts(tiny_onnx)
    config = _roundtrip(tensorrt_config("gsam_trt", facts, BATCHED, cuda_graphs=True))
    _check_backend_rules(config, BATCHED)
    assert config.optimization.cuda.graphs
    assert [(s.batch_size, dict(s.input)) for s in config.optimization.cuda.graph_spec] == [(1, {}), (2, {})]
    captured = {captured_shape(s, p) for s in config.optimization.cuda.graph_spec for p in BATCHED}
    assert captured == {(1, 3, 128, 128), (2, 3, 128, 128), (1, 3, 384, 384), (2, 3, 384, 384)}
    with pytest.raises(GSAMError, match="never launches the graphs of a model without batching"):
        tensorrt_config("gsam_trt", facts, TWO, cuda_graphs=True)


def test_gsam_image_records_where_it_computes(tiny_onnx):
    facts = read_onnx_facts(tiny_onnx)
    python = choose_compute("auto", facts, engine_profiles=[], gpu=False, python_max_batch=8, tile_pixels=96 * 96,
                            max_pixels=4 * 96 * 96)
    assert (python.model, python.input, python.input_dtype, python.max_batch) == ("gsam_python", "image_uint8",
                                                                                  "uint8", 4)
    trt = choose_compute("auto", facts, engine_profiles=BATCHED, gpu=True, python_max_batch=8, tile_pixels=0,
                         max_pixels=1 << 22)
    assert (trt.model, trt.max_batch) == ("gsam_trt", 2) and trt.ranges[1] == (256, 256, 512, 512)
    assert choose_compute("auto", facts, engine_profiles=[], gpu=True, python_max_batch=8, tile_pixels=0,
                          max_pixels=1 << 22).model == "gsam_onnx"
    with pytest.raises(GSAMError, match="needs gsam_trt in the repository"):
        choose_compute("gsam_trt", facts, engine_profiles=[], gpu=True, python_max_batch=8, tile_pixels=0,
                       max_pixels=1 << 22)
    config = _roundtrip(image_config("gsam_image", facts, compute=trt, gpu=True))
    assert config.parameters["compute_model"].string_value == "gsam_trt"
    assert json.loads(config.parameters["compute_ranges"].string_value)[0] == [64, 64, 255, 255]
    assert config.instance_group[0].kind == config.instance_group[0].KIND_CPU  # the engine holds the GPU


def test_build_writes_gsam_image_without_a_second_copy_of_the_model(tiny_onnx, tmp_path):
    from click.testing import CliRunner

    from gsam.cli import cli

    result = CliRunner().invoke(cli, ["triton", "build", str(tiny_onnx), "--repo", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "gsam_image: computes in gsam_python (image_uint8 uint8" in result.output
    assert not (tmp_path / "r" / "gsam_image" / "1" / "model.onnx").exists()
    assert (tmp_path / "r" / "gsam_python" / "1" / "model.onnx").exists()
    assert read_model_config(tmp_path / "r" / "gsam_image").parameters["compute_model"].string_value == "gsam_python"
    result = CliRunner().invoke(cli, ["triton", "build", str(tiny_onnx), "--repo", str(tmp_path / "in"),
                                      "--compute-model", "in-process"])
    assert result.exit_code == 0 and (tmp_path / "in" / "gsam_image" / "1" / "model.onnx").exists()
    result = CliRunner().invoke(cli, ["triton", "build", str(tiny_onnx), "--repo", str(tmp_path / "g"),
                                      "--cuda-graphs"])
    assert result.exit_code == 1 and "--cuda-graphs applies to gsam_trt" in result.output


def test_a_server_loading_gsam_image_also_loads_its_compute_model(tiny_onnx, tmp_path):
    from gsam.deploy.triton.repository import build_repository
    from gsam.runtime.serving.model_config import with_compute_models

    build_repository(tiny_onnx, tmp_path / "r", log=lambda s: None)
    assert with_compute_models(tmp_path / "r", ["gsam_image"]) == ["gsam_python", "gsam_image"]
    assert with_compute_models(tmp_path / "r", ["gsam_python", "gsam_image"]) == ["gsam_python", "gsam_image"]
