"""fp16 and int8 variants: made from the trained fp32 file, gated on real images, written only when they pass."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from support.gates import TINY_INT8_GATE

from gsam.cli import cli
from gsam.errors import GSAMError
from gsam.export.gate import GateThresholds
from gsam.export.gate_data import GateImages, load_gate_images, run_data_folder
from gsam.export.metadata import read_onnx_facts
from gsam.export.onnx import ExportError
from gsam.export.onnx_graph import first_convolutions, input_normalization_nodes
from gsam.export.variants import make_variant
from gsam.io import sha256_file
from gsam.runtime.backends import load_backend

UNSEEN_SIZES = [(61, 203), (150, 77)]


# Exports and gates variants of the trained run: the full tier only (make test).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gate_data(synth_data):
    return load_gate_images(synth_data, calib_count=12)


@pytest.fixture(scope="module")
def reference(trained_run):
    return load_backend("torch", trained_run)


def onnxruntime(path):
    return load_backend("onnxruntime", path)


def _variant(tmp_path_factory, fp32, precision, reference, gate_data):
    out = tmp_path_factory.mktemp(precision) / f"model.{precision}.onnx"
    report = make_variant(fp32, out, precision, reference=reference, candidate=onnxruntime, data=gate_data,
                          thresholds=TINY_INT8_GATE if precision == "int8" else None, log=lambda s: None)
    return out, report


@pytest.fixture(scope="module")
def fp16_variant(tmp_path_factory, trained_onnx, reference, gate_data):
    return _variant(tmp_path_factory, trained_onnx, "fp16", reference, gate_data)


@pytest.fixture(scope="module")
def int8_variant(tmp_path_factory, trained_onnx, reference, gate_data):
    return _variant(tmp_path_factory, trained_onnx, "int8", reference, gate_data)


def _tensor_types(path) -> dict[str, int]:
    """Element type of every tensor in the graph (after ONNX shape inference)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types |= {t.name: t.data_type for t in graph.initializer}
    return types


def _check_io_and_unseen_sizes(path) -> None:
    model = onnx.load(str(path), load_external_data=False)
    io = {v.name: v.type.tensor_type for v in [*model.graph.input, *model.graph.output]}
    assert io["image"].elem_type == onnx.TensorProto.FLOAT
    assert io["logits"].elem_type == onnx.TensorProto.FLOAT
    assert io["mask"].elem_type == onnx.TensorProto.INT32
    assert [d.dim_param for d in io["image"].shape.dim] == ["batch", "", "height", "width"]
    segmenter = load_backend("onnxruntime", path)
    for h, w in UNSEEN_SIZES:
        out = segmenter(np.random.default_rng(h).uniform(0, 255, (1, 3, h, w)).astype(np.float32))
        assert out["logits"].shape == (1, 3, h, w) and out["logits"].dtype == np.float32
        assert out["mask"].shape == (1, h, w) and out["mask"].dtype == np.int32


def test_fp16_variant_passes_its_gate_and_records_it(fp16_variant, trained_onnx):
    path, report = fp16_variant
    assert report.passed and report.mask_agreement >= 0.995 and report.miou_drop <= 0.5
    assert {r.kind for r in report.rows} == {"labelled", "unseen size"}
    facts = read_onnx_facts(path)
    assert facts.precision == "fp16"
    assert facts.lineage["onnx_sha256"] == sha256_file(trained_onnx) == facts.extra["fp32_onnx_sha256"]
    assert facts.lineage["source_checkpoint"] == "best.pt"  # the fp32 file's lineage is kept
    assert float(facts.extra["gate_mask_agreement"]) == pytest.approx(report.mask_agreement, abs=1e-6)
    assert "gate_miou_drop" in facts.extra
    assert "mIoU reference" in report.table() and "PASSED" in report.table()


def test_fp16_graph_keeps_normalization_and_softmax_in_fp32(fp16_variant):
    path, _ = fp16_variant
    types = _tensor_types(path)
    graph = onnx.load(str(path)).graph
    assert any(t == onnx.TensorProto.FLOAT16 for n in graph.node if n.op_type == "MatMul" for t in
               [types.get(i) for i in n.input])  # the heavy math did move to fp16
    islands = [n for n in graph.node if n.op_type in ("LayerNormalization", "Softmax")]
    assert {n.op_type for n in islands} == {"LayerNormalization", "Softmax"}
    for node in islands:
        for name in [*node.input, *node.output]:
            if name:
                assert types[name] == onnx.TensorProto.FLOAT, (node.op_type, node.name, name)
    normalization = [n for n in input_normalization_nodes(graph) if n.op_type != "Cast"]
    assert {"Sub", "Div"} <= {n.op_type for n in normalization}
    for node in normalization:  # the image's normalization reads and writes fp32 throughout
        for name in [*node.input[:1], *node.output]:
            assert types[name] == onnx.TensorProto.FLOAT, (node.op_type, name)
    _check_io_and_unseen_sizes(path)


def test_int8_graph_quantizes_matmul_and_conv_and_keeps_the_rest_float(int8_variant):
    path, report = int8_variant
    assert report.passed and report.mask_agreement >= TINY_INT8_GATE.min_agreement
    assert read_onnx_facts(path).precision == "int8"
    graph = onnx.load(str(path)).graph
    produced_by = {out: n for n in graph.node for out in n.output}
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops

    def dequantized(node) -> bool:
        return all(produced_by.get(name) is not None and produced_by[name].op_type == "DequantizeLinear"
                   for name in node.input[:2])

    excluded = {n.name for n in first_convolutions(graph)}
    assert excluded  # the convolutions that read the image
    weighted = [n for n in graph.node if n.op_type in ("MatMul", "Conv")]
    assert sum(dequantized(n) for n in weighted) >= 0.8 * len(weighted)
    for node in graph.node:
        if node.name in excluded or node.op_type in ("LayerNormalization", "Softmax"):
            assert not any(produced_by.get(i) is not None and produced_by[i].op_type == "DequantizeLinear"
                           for i in node.input), (node.op_type, node.name)
    _check_io_and_unseen_sizes(path)


def test_constant_image_calibration_fails_the_gate_and_writes_nothing(tmp_path, trained_onnx, reference, gate_data):
    out = tmp_path / "bad.int8.onnx"
    constant = [np.full((96, 96, 3), 128, dtype=np.uint8)]
    with pytest.raises(ExportError, match="gate failed .*(agreement|mIoU drop)"):
        make_variant(trained_onnx, out, "int8", reference=reference, candidate=onnxruntime,
                     data=GateImages(gate_data.images, gate_data.labels, constant), log=lambda s: None)
    assert list(tmp_path.iterdir()) == []  # neither the file nor the staging folder


def test_impossible_threshold_fails_and_a_good_file_is_left_alone(tmp_path, trained_onnx, reference, gate_data):
    out = tmp_path / "model.fp16.onnx"
    out.write_text("earlier file")
    with pytest.raises(ExportError, match="mIoU drop .* > -50"):
        make_variant(trained_onnx, out, "fp16", reference=reference, candidate=onnxruntime, data=gate_data,
                     thresholds=GateThresholds(max_miou_drop=-50), log=lambda s: None)
    assert out.read_text() == "earlier file" and len(list(tmp_path.iterdir())) == 1


def test_variant_needs_an_fp32_source_and_calibration_for_int8(tmp_path, fp16_variant, trained_onnx, reference,
                                                             gate_data):
    with pytest.raises(ExportError, match="precision' is fp16"):
        make_variant(fp16_variant[0], tmp_path / "x.onnx", "int8", reference=reference, candidate=onnxruntime,
                     data=GateImages(gate_data.images))
    with pytest.raises(ExportError, match="int8 needs calibration images"):
        make_variant(trained_onnx, tmp_path / "x.onnx", "int8", reference=reference, candidate=onnxruntime,
                     data=GateImages(gate_data.images))


def test_triton_build_of_a_variant_keeps_fp32_io_and_its_facts(tmp_path, int8_variant, trained_onnx):
    from gsam.deploy.triton.repository import build_repository, config_facts
    from gsam.runtime.serving.model_config import read_model_config

    path, _ = int8_variant
    for model_dir in build_repository(path, tmp_path / "repo"):
        config = read_model_config(model_dir)
        types = {t.name: t.data_type for t in [*config.input, *config.output]}
        if config.name == "gsam_image":  # encoded bytes in, PNG bytes out, whatever the precision
            # TYPE_STRING bytes in and out; the timings `gsam bench` reads are FP32
            assert types == {"image_bytes": 13, "mask_png": 13, "overlay_png": 13, "timings_ms": 11}
        else:  # TYPE_FP32 image (gsam_python also TYPE_UINT8 image_uint8), TYPE_FP32 logits, TYPE_INT32 mask
            assert {k: v for k, v in types.items() if k != "image_uint8"} == {"image": 11, "logits": 11, "mask": 8}
        facts = config_facts(config)
        assert facts.precision == "int8" and facts.extra["fp32_onnx_sha256"] == sha256_file(trained_onnx)


def test_cli_exports_fp16_and_int8_through_their_gates(tmp_path, trained_run):
    for precision in ("fp16", "int8"):
        out = tmp_path / f"model.{precision}.onnx"
        result = CliRunner().invoke(cli, ["export", "onnx", str(trained_run), "--out", str(out), "--exporter",
                                          "torchscript", "--precision", precision, "--calib-images", "8",
                                          *(["--min-agreement", str(TINY_INT8_GATE.min_agreement)]
                                            if precision == "int8" else [])])
        assert result.exit_code == 0, result.output
        assert "PASSED" in result.output and "mIoU reference" in result.output
        assert read_onnx_facts(out).precision == precision
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fp16.onnx", "model.int8.onnx"]


def test_cli_failed_gate_exits_non_zero_and_writes_nothing(tmp_path, trained_run):
    out = tmp_path / "model.fp16.onnx"
    result = CliRunner().invoke(cli, ["export", "onnx", str(trained_run), "--out", str(out), "--exporter",
                                      "torchscript", "--precision", "fp16", "--max-miou-drop", "-50"])
    assert result.exit_code == 1
    assert "gate failed (mIoU drop" in result.output and "no file written" in result.output
    assert list(tmp_path.iterdir()) == []


def test_missing_run_data_asks_for_calib_data(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train:\n  data: /nowhere/dataset\n")
    with pytest.raises(GSAMError, match="not here; pass --calib-data"):
        run_data_folder(run)
    with pytest.raises(GSAMError, match="no run config .* --calib-data"):
        run_data_folder(tmp_path)


def _zero_point_types(path) -> set[int]:
    """Element types of the activation QuantizeLinear zero points (the quantized activations' type)."""
    graph = onnx.load(str(path)).graph
    initializers = {t.name: t.data_type for t in graph.initializer}
    return {initializers[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2
            and n.input[2] in initializers and n.input[0] not in initializers}


def test_int8_schemes_signed_for_tensorrt_unsigned_for_cpu_and_tensorrt_refuses_the_cpu_file(
        tmp_path, int8_variant, trained_onnx, reference, gate_data):
    tensorrt_file, _ = int8_variant
    assert _zero_point_types(tensorrt_file) == {onnx.TensorProto.INT8}
    assert read_onnx_facts(tensorrt_file).extra["int8_scheme"] == "tensorrt"
    cpu_file = tmp_path / "model.int8cpu.onnx"
    report = make_variant(trained_onnx, cpu_file, "int8", reference=reference, candidate=onnxruntime, data=gate_data,
                          thresholds=TINY_INT8_GATE, log=lambda s: None, int8_scheme="cpu")
    assert report.passed and report.mask_agreement >= TINY_INT8_GATE.min_agreement
    assert _zero_point_types(cpu_file) == {onnx.TensorProto.UINT8}
    assert read_onnx_facts(cpu_file).extra["int8_scheme"] == "cpu"
    _check_io_and_unseen_sizes(cpu_file)
    result = CliRunner().invoke(cli, ["export", "tensorrt", str(cpu_file), "--out", str(tmp_path / "m.plan"),
                                      "--profile", "min=1x3x64x64,opt=1x3x128x128,max=1x3x256x256",
                                      "--print-trtexec"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "'int8_scheme' is cpu" in result.output and "--int8-scheme tensorrt" in result.output
    with pytest.raises(ExportError, match="int8 scheme must be one of tensorrt, cpu"):
        make_variant(trained_onnx, tmp_path / "x.onnx", "int8", reference=reference, candidate=onnxruntime,
                     data=GateImages(gate_data.images, None, gate_data.calib_images), log=lambda s: None,
                     int8_scheme="u8")
    assert not (tmp_path / "x.onnx").exists()
