"""ONNX export: truly dynamic height/width, verified; failures leave no file; profiles."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from gsam.cli import cli
from gsam.export.onnx import ExportError, export_onnx
from gsam.export.profiles import (
    ProfileError,
    ShapeProfile,
    parse_profile,
    select_profile,
    sizes_from_dataset,
    suggest_profiles,
)
from gsam.model import build_gsam
from gsam.runtime.backends import load_backend


@pytest.mark.parametrize("shape", [(1, 33, 47), (1, 300, 97), (1, 224, 224), (2, 61, 150)])
def test_onnxruntime_matches_pytorch_at_unseen_sizes(tiny_onnx, tiny_model, shape):
    images = torch.rand(shape[0], 3, shape[1], shape[2], generator=torch.Generator().manual_seed(5)) * 255
    with torch.no_grad():
        expected = tiny_model(images).numpy()
    out = load_backend("onnxruntime", tiny_onnx)(images.numpy())
    assert out["logits"].shape == expected.shape
    assert np.abs(out["logits"] - expected).max() / np.abs(expected).max() <= 1e-4
    np.testing.assert_array_equal(out["mask"], out["logits"].argmax(axis=1))
    assert out["mask"].dtype == np.int32


def test_graph_dims_are_symbolic_and_metadata_present(tiny_onnx, tiny_model):
    model = onnx.load(str(tiny_onnx))
    (image,) = model.graph.input
    dims = image.type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"] and dims[1].dim_value == 3
    outputs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert outputs == {"logits": ["batch", 3, "height", "width"], "mask": ["batch", "height", "width"]}
    props = {p.key: p.value for p in model.metadata_props}
    assert props["num_classes"] == "3" and json.loads(props["class_names"]) == ["background", "disc", "square"]
    assert props["min_size"] == "32" and props["token_stride"] == "8" and "gsam_version" in props
    assert min(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17


class ShapeBranchModel(nn.Module):
    """GSAM plus a Python branch on the input height: traced once, silently wrong elsewhere."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config = inner, inner.config

    def forward(self, images):
        logits = self.inner(images)
        if images.shape[2] > 100:  # evaluated once while tracing (the sample is 96 high)
            logits = logits * 2
        return logits

    def predict_mask(self, logits):
        return self.inner.predict_mask(logits)


def test_shape_dependent_branch_is_caught_and_nothing_is_written(tmp_path, tiny_model):
    out = tmp_path / "broken.onnx"
    with pytest.raises(ExportError, match="verification failed"):
        export_onnx(ShapeBranchModel(tiny_model), out, exporter="torchscript", log=lambda s: None)
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_vit_b_random_weights_exports_and_matches(tmp_path):
    """Full size: the window blocks pad and the global blocks' tables interpolate at vit_b's widths too. Exported
    with torchscript: dynamo's trace of vit_b takes 7 CPU-minutes, and the dynamo path is the tiny model's in
    every tier (tests/conftest.py), through the same modules."""
    torch.manual_seed(0)
    model = build_gsam("vit_b", num_classes=2)
    report = export_onnx(model, tmp_path / "vit_b.onnx", exporter="torchscript", verify_sizes=[(200, 296)],
                         log=lambda s: None)
    assert report.rows and all(r.max_rel <= 1e-3 for r in report.rows)
    assert {(r.height, r.width) for r in report.rows} == {(200, 296)}


def test_cli_export_from_a_run_and_bad_inputs(tmp_path, trained_run):
    runner = CliRunner()
    out = tmp_path / "run.onnx"
    result = runner.invoke(cli, ["export", "onnx", str(trained_run), "--out", str(out), "--exporter", "torchscript",
                                 "--verify-sizes", "37x211,130x70"])
    assert result.exit_code == 0, result.output
    assert "1x3x37x211" in result.output and out.is_file()
    result = runner.invoke(cli, ["export", "onnx", str(tmp_path / "nope"), "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1 and "no such run directory" in result.output
    result = runner.invoke(cli, ["export", "onnx", str(trained_run), "--out", str(tmp_path / "y.onnx"),
                                 "--verify-sizes", "20x200"])
    assert result.exit_code == 1 and "below the model's minimum" in result.output
    foreign = tmp_path / "foreign.onnx"
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), foreign)
    result = runner.invoke(cli, ["predict", str(foreign), str(tmp_path), "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "not a gsam ONNX model" in result.output


def test_profile_parsing_validation_and_selection():
    p = parse_profile("min=1x3x128x128,opt=1x3x512x512,max=2x3x1024x1024", min_size=32)
    assert p.min == (1, 3, 128, 128) and p.max == (2, 3, 1024, 1024) and p.name == "1x3x128x128-2x3x1024x1024"
    for bad, message in [("min=1x3x128x128,opt=1x3x64x64,max=1x3x256x256", "min <= opt <= max"),
                         ("min=1x3x16x16,opt=1x3x64x64,max=1x3x256x256", "below the model's minimum"),
                         ("min=1x1x64x64,opt=1x1x64x64,max=1x1x64x64", "the image input has 3"),
                         ("min=1x3x64,opt=1x3x64x64,max=1x3x64x64", "NxCxHxW"),
                         ("opt=1x3x64x64,max=1x3x64x64", "missing min")]:
        with pytest.raises(ProfileError, match=message):
            parse_profile(bad, min_size=32)
    small = ShapeProfile((1, 3, 32, 32), (1, 3, 256, 256), (1, 3, 512, 512))
    large = ShapeProfile((1, 3, 256, 256), (1, 3, 1024, 1024), (2, 3, 2048, 2048))
    assert select_profile([large, small], (1, 3, 300, 400)) == 1  # the narrowest that fits
    assert select_profile([large, small], (2, 3, 300, 400)) == 0
    with pytest.raises(ProfileError, match="fits none of the engine's profiles") as err:
        select_profile([large, small], (1, 3, 4000, 64))
    assert small.name in str(err.value) and large.name in str(err.value)


def test_bucketed_profiles_cover_every_size(synth_data):
    sizes = [(480, 640), (512, 512), (720, 1280), (1080, 1920), (300, 400), (1024, 1024)]
    profiles = suggest_profiles(sizes, buckets=3, max_batch=2)
    assert len(profiles) == 3
    for h, w in sizes:
        assert any(p.contains((1, 3, h, w)) for p in profiles)
        assert any(p.contains((2, 3, h, w)) for p in profiles)
    widest = max(p.max[2] * p.max[3] for p in profiles)
    assert min(p.max[2] * p.max[3] for p in profiles) < widest  # narrower than one all-covering profile
    dataset_sizes = sizes_from_dataset(synth_data)
    assert all(any(p.contains((1, 3, *s)) for p in suggest_profiles(dataset_sizes)) for s in dataset_sizes)


@pytest.mark.parametrize("exporter", ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)])
def test_uint8_input_export_verifies_at_unseen_sizes_and_matches_the_float_model(tiny_model, tiny_onnx, tmp_path,
                                                                                   exporter):
    """--input-dtype uint8: the cast is in the graph, the export gate compares with PyTorch as always, and on
    whole-number pixels the file gives what the float32 export gives."""
    from gsam.export.metadata import read_onnx_facts

    path = tmp_path / "u8.onnx"
    report = export_onnx(tiny_model, path, exporter=exporter, input_dtype="uint8", log=lambda s: None)
    assert report.rows and all(r.max_rel <= 1e-3 and r.error is None for r in report.rows)
    graph = onnx.load(str(path), load_external_data=False).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert read_onnx_facts(path).input_dtype == "uint8"
    images = np.random.default_rng(3).integers(0, 256, (2, 3, 70, 90)).astype(np.float32)
    got, want = load_backend("onnxruntime", path)(images), load_backend("onnxruntime", tiny_onnx)(images)
    assert np.abs(got["logits"] - want["logits"]).max() <= 1e-3 * np.abs(want["logits"]).max()
    np.testing.assert_array_equal(got["mask"], want["mask"])


def test_triton_configs_of_a_uint8_export_take_uint8(tiny_model, tmp_path):
    from gsam.deploy.triton.repository import build_repository
    from gsam.export.profiles import parse_profile
    from gsam.runtime.serving.model_config import read_model_config

    path = tmp_path / "u8.onnx"
    export_onnx(tiny_model, path, exporter="torchscript", input_dtype="uint8", log=lambda s: None)
    profile = parse_profile("min=1x3x64x64,opt=1x3x128x128,max=1x3x256x256")
    build_repository(path, tmp_path / "r", trt_profiles=[profile], log=lambda s: None)
    types = {name: {i.name: i.data_type for i in read_model_config(tmp_path / "r" / name).input}
             for name in ("gsam_python", "gsam_onnx", "gsam_trt")}
    from tritonclient.grpc import model_config_pb2 as mc

    assert types["gsam_onnx"] == {"image": mc.TYPE_UINT8} == types["gsam_trt"]
    assert types["gsam_python"] == {"image": mc.TYPE_FP32, "image_uint8": mc.TYPE_UINT8}
    warmup = read_model_config(tmp_path / "r" / "gsam_trt").model_warmup[0]
    assert warmup.inputs["image"].data_type == mc.TYPE_UINT8


def test_the_triton_client_sends_one_byte_per_channel_when_it_loses_nothing():
    from gsam.runtime.backends.triton_client import TritonSegmenter

    client = TritonSegmenter.__new__(TritonSegmenter)
    whole = np.random.default_rng(1).integers(0, 256, (1, 3, 40, 50)).astype(np.float32)
    client.inputs = {"image": "FP32", "image_uint8": "UINT8"}  # gsam_python
    name, data_type, array = client._tensor_input(whole)
    assert (name, data_type, array.dtype) == ("image_uint8", "UINT8", np.uint8) and np.array_equal(array, whole)
    assert client._tensor_input(whole + 0.5)[:2] == ("image", "FP32")  # fractions stay float32
    client.inputs = {"image": "UINT8"}  # a uint8 export in gsam_onnx or gsam_trt
    assert client._tensor_input(whole)[:2] == ("image", "UINT8")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_variants_of_a_uint8_export_keep_their_uint8_input(tiny_model, tmp_path, precision):
    """fp16 keeps the input's Cast in fp32 and int8 calibrates on uint8 batches; both still take uint8. The
    gate is opened (random weights): accuracy is tests/test_precision.py's."""
    from gsam.export.gate import GateThresholds
    from gsam.export.gate_data import GateImages
    from gsam.export.metadata import read_onnx_facts
    from gsam.export.variants import make_variant

    fp32 = tmp_path / "u8.onnx"
    export_onnx(tiny_model, fp32, exporter="torchscript", input_dtype="uint8", log=lambda s: None)
    images = [np.random.default_rng(i).integers(0, 256, (64 + 8 * i, 80, 3), dtype=np.uint8) for i in range(3)]
    out = tmp_path / f"u8.{precision}.onnx"
    make_variant(fp32, out, precision, reference=load_backend("onnxruntime", fp32),
                 candidate=lambda path: load_backend("onnxruntime", path), data=GateImages(images, None, images),
                 thresholds=GateThresholds(min_agreement=0.0, max_miou_drop=100.0), log=lambda s: None)
    graph = onnx.load(str(out)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert read_onnx_facts(out).input_dtype == "uint8" and read_onnx_facts(out).precision == precision
