"""TensorRT without a GPU: the code checked against the real TensorRT API of each supported release and
against TensorRT's ONNX operator table, the trtexec line against trtexec's option rules, and the Triton
configs for several profiles.

The facts live in tests/data/tensorrt/ (its README says where they come from): the name lists and base
classes that the compiled bindings of TensorRT 10.0.1, 10.13.0.35, 10.16.1.11, 11.1.0.106 and 11.4.0.106
register, and the ONNX parser's operator table of TensorRT 10.15 with what 11.x adds. The full type
check against the same releases is tests/test_tensorrt_types.py.
"""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from support.tensorrt_stubs import tensorrt_modules

from gsam.cli import cli
from gsam.errors import GSAMError
from gsam.export.profiles import parse_profile
from gsam.export.tensorrt import BuildSettings, plan_precision, trtexec_command

REPO = Path(__file__).parents[1]
DATA = Path(__file__).parent / "data" / "tensorrt"
RELEASES = ("10.0.1", "10.13.0.35", "10.16.1.11", "11.1.0.106", "11.4.0.106")
TWO_PROFILES = [parse_profile("min=1x3x32x32,opt=1x3x128x128,max=2x3x256x256"),
                parse_profile("min=1x3x256x256,opt=1x3x512x512,max=1x3x1024x1024")]


# ---------------------------------------------------------------------------------------------------------------
# The TensorRT API the code uses exists in every supported release.

# Our variable names -> the TensorRT class they hold (the annotations of tensorrt.py and tensorrt_engine.py).
VARIABLE_CLASSES = {"builder": "Builder", "network": "INetworkDefinition", "config": "IBuilderConfig",
                    "parser": "OnnxParser", "shapes": "IOptimizationProfile", "cache": "ITimingCache",
                    "logger": "Logger", "serialized": "IHostMemory", "engine": "ICudaEngine",
                    "context": "IExecutionContext", "dtype": "DataType", "self.engine": "ICudaEngine",
                    "self.context": "IExecutionContext", "lane.context": "IExecutionContext",
                    "self.runtime": "Runtime"}
# (class, method) -> the class of what it returns, where the code chains on it.
RETURNS = {("Runtime", "deserialize_cuda_engine"): "ICudaEngine",
           ("IBuilderConfig", "get_timing_cache"): "ITimingCache",
           ("ICudaEngine", "create_execution_context"): "IExecutionContext",
           ("ICudaEngine", "get_tensor_dtype"): "DataType", ("ICudaEngine", "get_tensor_mode"): "TensorIOMode"}
# Set by the package's Python code (tensorrt_bindings/__init__.py), not by the compiled bindings.
PYTHON_LEVEL = {"__version__"}
TENSORRT_CODE = tensorrt_modules()  # every module that imports tensorrt, found (tests/support/tensorrt_stubs.py)


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _class_of(node: ast.AST) -> str | None:
    name = _dotted(node)
    if name in VARIABLE_CLASSES:
        return VARIABLE_CLASSES[name]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if _dotted(node.func.value) == "trt":
            return node.func.attr  # trt.Runtime(...) -> a Runtime
        owner = _class_of(node.func.value)
        return RETURNS.get((owner, node.func.attr)) if owner else None
    return None


def tensorrt_uses(source: str) -> set[str]:
    """The `Class.member` (or module-level name) TensorRT items the source uses."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        dotted = _dotted(node)
        if dotted and dotted.startswith("trt."):
            found.add(dotted[4:])
        elif (owner := _class_of(node.value)) is not None:
            found.add(f"{owner}.{node.attr}")
    return found


class Api:
    """One release's names, with members looked up through the class's bases (Logger.WARNING is
    ILogger's: the bindings register a member once, on the class that declares it)."""

    def __init__(self, version: str) -> None:
        lines = (DATA / f"api-{version}.txt").read_text().splitlines()
        self.names = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
        self.bases: dict[str, list[str]] = json.loads((DATA / f"bases-{version}.json").read_text())

    def has(self, item: str) -> bool:
        if item in self.names or item in PYTHON_LEVEL:
            return True
        cls, _, member = item.partition(".")
        return bool(member) and any(f"{base}.{member}" in self.names for base in self.bases.get(cls, []))

    def missing(self, items: set[str]) -> list[str]:
        return sorted(i for i in items if not self.has(i))


def _code_uses() -> set[str]:
    return set().union(*(tensorrt_uses(f.read_text()) for f in TENSORRT_CODE))


def test_uses_are_found_in_the_code():
    uses = _code_uses()
    assert {"NetworkDefinitionCreationFlag.STRONGLY_TYPED", "Builder.create_network", "Logger.WARNING",
            "IExecutionContext.execute_async_v3", "IExecutionContext.set_input_shape", "OnnxParser.parse_from_file",
            "Builder.build_serialized_network", "IOptimizationProfile.set_shape", "IBuilderConfig.set_timing_cache",
            "Runtime.deserialize_cuda_engine", "ICudaEngine.get_tensor_dtype", "DataType.name",
            "IExecutionContext.set_optimization_profile_async", "TensorIOMode.INPUT"} <= uses
    assert not uses & {"BuilderFlag.FP16", "BuilderFlag.BF16", "ILayer.precision", "ILayer.set_output_type"}


@pytest.mark.parametrize("version", RELEASES)
def test_tensorrt_api_used_exists_in_each_release(version):
    assert Api(version).missing(_code_uses()) == [], f"TensorRT {version} lacks these"


def test_inherited_members_are_found_through_the_bases():
    api = Api("11.4.0.106")
    assert "Logger.WARNING" not in api.names and "ILogger.WARNING" in api.names and api.has("Logger.WARNING")
    assert api.bases["Logger"] == ["ILogger"] and not api.has("Logger.no_such_member")


def test_the_api_check_catches_weak_typing_on_tensorrt_11():
    weak = tensorrt_uses("def build(trt, config):\n    config.set_flag(trt.BuilderFlag.FP16)\n")
    layers = {"ILayer.precision", "ILayer.set_output_type"}
    weak |= layers
    assert weak == {"IBuilderConfig.set_flag", "BuilderFlag", "BuilderFlag.FP16", *layers}
    for version in RELEASES:
        removed = [] if version.startswith("10.") else sorted({"BuilderFlag.FP16", *layers})
        assert Api(version).missing(weak) == removed, version


# ---------------------------------------------------------------------------------------------------------------
# Every operator of the fp32, fp16 and int8 exports, with its data type, is one TensorRT's ONNX parser takes
# (the 10.15 table; onnx-ops-notes.md: 11.0-11.5 add Swish, DFT and 5D GridSample and remove nothing), within
# the parser's restrictions on the operators gsam uses.

ONNX_TO_TRT_TYPE = {onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16",
                    onnx.TensorProto.BFLOAT16: "BF16", onnx.TensorProto.INT32: "INT32",
                    onnx.TensorProto.INT64: "INT64", onnx.TensorProto.INT8: "INT8", onnx.TensorProto.UINT8: "UINT8",
                    onnx.TensorProto.BOOL: "BOOL"}


def parser_ops() -> dict[str, set[str]]:
    ops = {}
    for line in (DATA / "onnx-ops-tensorrt-10.15.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        op, supported, *types = line.split("\t")
        if supported == "Y":
            ops[op] = {t.strip() for t in (types[0] if types else "").split(",") if t.strip()}
    return ops


def data_types(model: onnx.ModelProto) -> list[tuple[str, str, str]]:
    """(op, node name, TensorRT type name of its data input) for every node."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.value_info[:]  # converters leave stale types there; infer them afresh,
    OnnxModel(model).topological_sort()  # in an order where every input is typed before its use
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    types |= {t.name: t.data_type for t in inferred.graph.initializer}
    rows = []
    for node in inferred.graph.node:
        if node.op_type == "Constant":
            elem = next(a.t.data_type for a in node.attribute if a.name == "value") \
                if any(a.name == "value" for a in node.attribute) else onnx.TensorProto.INT64
        else:
            data = node.input[1] if node.op_type == "Where" else node.input[0]
            elem = types.get(data, 0)
        rows.append((node.op_type, node.name, ONNX_TO_TRT_TYPE.get(elem, f"onnx type {elem}")))
    return rows


def variant_model(fp32: Path, out: Path, precision: str) -> onnx.ModelProto:
    """The fp16 or int8 export as `gsam export onnx --precision` writes it. The gate's thresholds are
    opened: this test is about operators and types (accuracy is tests/test_precision.py's)."""
    from gsam.export.gate import GateThresholds
    from gsam.export.gate_data import GateImages
    from gsam.export.variants import make_variant
    from gsam.runtime.backends import load_backend

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(64, 96), (80, 72)]]
    make_variant(fp32, out, precision, reference=load_backend("onnxruntime", fp32),
                 candidate=lambda path: load_backend("onnxruntime", path), data=GateImages(images, None, images),
                 log=lambda s: None, thresholds=GateThresholds(min_agreement=0.0, max_miou_drop=100.0))
    return onnx.load(str(out))


@pytest.fixture(scope="module")
def exports(tiny_onnx, tmp_path_factory):
    folder = tmp_path_factory.mktemp("variants")
    return {"fp32": onnx.load(str(tiny_onnx)), "fp16": variant_model(tiny_onnx, folder / "tiny.fp16.onnx", "fp16"),
            "int8": variant_model(tiny_onnx, folder / "tiny.int8.onnx", "int8")}


def test_the_operator_table_reads_as_the_document_has_it():
    ops = parser_ops()
    assert len(ops) > 150 and ops["LayerNormalization"] == {"FP32", "FP16", "BF16"}
    assert ops["DequantizeLinear"] == {"INT8", "FP8", "FP4", "INT4"} and "AffineGrid" not in ops


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_operator_and_type_is_supported_by_tensorrts_parser(exports, precision):
    supported = parser_ops()
    rows = data_types(exports[precision])
    unsupported = sorted({(op, t) for op, _, t in rows if op not in supported or t not in supported[op]})
    assert not unsupported, f"{precision}: TensorRT's ONNX parser lacks these (op, type) pairs"
    ops = {op for op, _, _ in rows}
    assert {"Conv", "MatMul", "LayerNormalization"} <= ops
    if precision == "fp16":
        assert ("MatMul", "FP16") in {(op, t) for op, _, t in rows}
    if precision == "int8":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def _initializer(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    found = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name]
    found += [numpy_helper.to_array(a.t) for n in model.graph.node if n.op_type == "Constant" and n.output[0] == name
              for a in n.attribute if a.name == "value"]
    return found[0] if found else None


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_the_parsers_restrictions_on_the_operators_gsam_uses_hold(exports, precision):
    """QuantizeLinear/DequantizeLinear: signed int8 with zero points of 0; Resize: nearest or linear, no
    antialias; LayerNormalization: only its output Y is used (onnx-ops-notes.md)."""
    model = exports[precision]
    for node in model.graph.node:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero_point = _initializer(model, node.input[2]) if len(node.input) > 2 and node.input[2] else None
            assert zero_point is not None and zero_point.dtype == np.int8 and not zero_point.any(), node.name
        if node.op_type == "Resize":
            assert attributes.get("mode", b"nearest") in (b"nearest", b"linear") and not attributes.get("antialias")
        if node.op_type == "LayerNormalization":
            assert [o for o in node.output if o][1:] == [], node.name


# ---------------------------------------------------------------------------------------------------------------
# The normalizations export as LayerNormalization, with no Pow/Sqrt chains left for fp16 to overflow.

def test_every_normalization_is_one_layernormalization_node(tiny_onnx, tiny_model):
    from gsam.model.layers import LayerNorm2d

    ops = [n.op_type for n in onnx.load(str(tiny_onnx)).graph.node]
    norms = sum(isinstance(m, (LayerNorm2d, torch.nn.LayerNorm)) for m in tiny_model.modules())
    assert norms > 0 and "Pow" not in ops
    assert ops.count("LayerNormalization") == norms


def test_layernorm2d_matches_segment_anythings_and_loads_its_weights():
    from segment_anything.modeling.common import LayerNorm2d as SamLayerNorm2d

    from gsam.model.layers import LayerNorm2d

    torch.manual_seed(0)
    theirs, ours = SamLayerNorm2d(24), LayerNorm2d(24)
    theirs.weight.data.normal_(), theirs.bias.data.normal_()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 24, 7, 11) * 30 + 5
    assert ours.eps == theirs.eps
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# The trtexec line follows trtexec's option rules (samples/common/sampleOptions.cpp at each tag), on 10 and 11.

# Build options that trtexec 10 and 11 both have (11 dropped --fp16, --bf16, --int8, --precisionConstraints and
# --layerPrecisions with weak typing): a line of these alone runs on either.
TRTEXEC_OPTIONS = {"--onnx", "--saveEngine", "--profile", "--minShapes", "--optShapes", "--maxShapes",
                   "--stronglyTyped", "--memPoolSize", "--timingCacheFile", "--noTF32"}


def check_trtexec_line(line: str, profiles) -> dict[str, list[str]]:
    """Raise AssertionError where trtexec 10 or 11 would refuse the line; returns option -> values."""
    args = shlex.split(line)
    assert args[0] == "trtexec"
    options: dict[str, list[str]] = {}
    for i, arg in enumerate(args[1:], 1):
        key, _, value = arg.partition("=")
        assert key in TRTEXEC_OPTIONS, f"trtexec 10 or 11 has no {key}"
        options.setdefault(key, []).append(value)
        if key == "--profile":  # its shapes follow it directly, indices in order
            assert int(value) == len(options["--profile"]) - 1
            assert sorted(a.partition("=")[0] for a in args[i + 1:i + 4]) == ["--maxShapes", "--minShapes",
                                                                               "--optShapes"]
    assert len(options["--profile"]) == len(profiles) and "--stronglyTyped" in options
    for key, field in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
        assert options[key] == [f"image:{'x'.join(map(str, getattr(p, field)))}" for p in profiles]
    return options


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_the_trtexec_line_is_strongly_typed_for_every_precision(precision):
    line = trtexec_command(f"model.{precision}.onnx", "model.plan",
                           BuildSettings(TWO_PROFILES, precision, timing_cache="t.cache"))
    options = check_trtexec_line(line, TWO_PROFILES)
    assert options["--timingCacheFile"] == ["t.cache"] and options["--memPoolSize"] == ["workspace:4096M"]
    assert "--noTF32" in options  # fp32 layers in fp32 (trtexec allows TF32 unless told not to)


def test_bf16_is_no_engine_precision():
    with pytest.raises(GSAMError, match="autocast only"):
        BuildSettings(TWO_PROFILES, "bf16")
    result = CliRunner().invoke(cli, ["export", "tensorrt", "m.onnx", "--out", "m.plan", "--bf16"])
    assert result.exit_code != 0 and "was removed" in result.output


def test_print_trtexec_needs_no_tensorrt(tiny_onnx):
    args = ["export", "tensorrt", str(tiny_onnx), "--out", "tiny.plan", "--print-trtexec"]
    for p in TWO_PROFILES:
        args += ["--profile", p.flag()]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    check_trtexec_line(result.output.strip().splitlines()[-1], TWO_PROFILES)


def test_precision_plan():
    assert plan_precision("fp32", None) is None and plan_precision("fp16", None) is None
    assert plan_precision("fp16", "fp16") is None and plan_precision("fp32", "fp16") == "fp16"
    with pytest.raises(GSAMError, match="already int8"):
        plan_precision("int8", "fp16")
    with pytest.raises(GSAMError, match="export onnx --precision int8"):
        plan_precision("fp32", "int8")


# ---------------------------------------------------------------------------------------------------------------
# Triton configs serve every profile; each profile warms up at a shape that only it contains (Triton's
# tensorrt backend sends a request to one of the profiles that contain it).

def _inside(shape, profile) -> bool:
    return profile.contains(tuple(shape))


def _warmups(profiles) -> list[list[int]]:
    from gsam.deploy.triton.repository import config_text, tensorrt_config
    from gsam.runtime.serving.model_config import parse_config

    facts = _facts()
    config = parse_config(config_text(tensorrt_config("gsam_trt", facts, profiles), "t"))
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 0
    assert [list(g.profile) for g in config.instance_group] == [[str(i) for i in range(len(profiles))]]
    assert all(w.batch_size == 1 and w.inputs["image"].random_data for w in config.model_warmup)
    return [list(w.inputs["image"].dims) for w in config.model_warmup]


def _facts():
    from gsam.model.config import get_config
    from gsam.model.facts import ModelFacts

    return ModelFacts(get_config("tiny", num_classes=3))


def _only_in(shape, profiles) -> list[int]:
    return [i for i, p in enumerate(profiles) if _inside(shape, p)]


ADJACENT = [parse_profile("min=1x3x64x64,opt=1x3x96x96,max=1x3x128x128"),  # share the 128x128 boundary
            parse_profile("min=1x3x128x128,opt=1x3x128x128,max=1x3x256x256")]


@pytest.mark.parametrize("profiles", [TWO_PROFILES, ADJACENT, TWO_PROFILES[::-1]], ids=["two", "adjacent", "reversed"])
def test_each_profile_warms_up_at_a_shape_only_it_contains(profiles):
    shapes = _warmups(profiles)
    assert [_only_in(s, profiles) for s in shapes] == [[i] for i in range(len(profiles))]
    for shape, profile in zip(shapes, profiles):  # its opt where no other profile contains it
        if _only_in(profile.opt, profiles) == [profiles.index(profile)]:
            assert tuple(shape) == profile.opt


def test_a_shared_opt_moves_to_the_nearest_shape_only_that_profile_contains():
    (low, high), (shape_low, shape_high) = ADJACENT, _warmups(ADJACENT)
    assert low.opt == (1, 3, 96, 96) == tuple(shape_low)
    assert high.opt == (1, 3, 128, 128) and low.contains(high.opt)  # the boundary: both contain it
    assert tuple(shape_high) in {(1, 3, 129, 128), (1, 3, 128, 129)}


def test_a_profile_inside_the_others_is_refused(tiny_onnx, tmp_path):
    nested = [parse_profile("min=1x3x32x32,opt=1x3x160x160,max=1x3x160x160"),
              parse_profile("min=1x3x64x64,opt=1x3x128x128,max=1x3x160x160")]
    args = ["triton", "build", str(tiny_onnx), "--repo", str(tmp_path / "repo")]
    result = CliRunner().invoke(cli, args + [a for p in nested for a in ("--profile", p.flag())])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "Error: profile 1 (1x3x64x64-1x3x160x160) lies inside the other profiles" in result.output
    assert not (tmp_path / "repo").exists()  # nothing written


# TensorRT accelerator parameters Triton's onnxruntime backend accepts (src/onnxruntime.cc); others fail the load.
ONNXRUNTIME_BACKEND_TRT_KEYS = {
    "precision_mode", "max_workspace_size_bytes", "trt_max_partition_iterations", "trt_min_subgraph_size",
    "trt_engine_cache_enable", "trt_engine_cache_path", "trt_engine_cache_prefix", "trt_layer_norm_fp32_fallback",
    "trt_timing_cache_enable", "trt_timing_cache_path", "trt_builder_optimization_level", "trt_cuda_graph_enable",
    "trt_profile_min_shapes", "trt_profile_max_shapes", "trt_profile_opt_shapes"}


def test_onnx_config_takes_one_profile_and_warms_up_inside_it(tiny_onnx):
    from gsam.deploy.triton.repository import config_text, onnx_config
    from gsam.export.metadata import read_onnx_facts
    from gsam.runtime.serving.model_config import parse_config

    facts = read_onnx_facts(tiny_onnx)
    with pytest.raises(GSAMError, match="serves only one profile"):
        onnx_config("gsam_onnx", facts, trt_profiles=TWO_PROFILES)
    high = [TWO_PROFILES[1]]  # 64x96 (the default warm-up) lies outside it
    config = parse_config(config_text(onnx_config("gsam_onnx", facts, trt_profiles=high, accelerator_precision="fp16"), "t"))
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["trt_profile_min_shapes"] == "image:1x3x256x256"
    assert set(accelerator.parameters) <= ONNXRUNTIME_BACKEND_TRT_KEYS
    assert accelerator.parameters["precision_mode"] in ("FP32", "FP16")
    (warmup,) = config.model_warmup
    assert _inside(warmup.inputs["image"].dims, high[0])


def test_build_writes_gsam_trt_from_profiles_before_the_engine_exists(tiny_onnx, tmp_path):
    from gsam.runtime.serving.model_config import read_model_config

    args = ["triton", "build", str(tiny_onnx), "--repo", str(tmp_path / "repo")]
    for p in TWO_PROFILES:
        args += ["--profile", p.flag()]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "gsam_onnx" in result.output and "the first" in result.output and "model.plan" in result.output
    trt = read_model_config(tmp_path / "repo" / "gsam_trt")
    assert [list(g.profile) for g in trt.instance_group] == [["0", "1"]]
    onnx_cfg = read_model_config(tmp_path / "repo" / "gsam_onnx")
    params = onnx_cfg.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters
    assert params["trt_profile_max_shapes"] == "image:2x3x256x256"


def test_build_checks_an_engines_sidecar_against_the_profiles(tiny_onnx, tmp_path):
    import json

    from gsam.deploy.triton.repository import build_repository
    from gsam.export.metadata import read_onnx_facts
    from gsam.runtime.serving.model_config import read_model_config

    engine = tmp_path / "model.plan"
    engine.write_bytes(b"serialized engine bytes")  # the repository writer only copies it
    sidecar = {"precision": "fp16", "tensorrt_version": "10.13.0", "profiles": [p.to_dict() for p in TWO_PROFILES],
               "metadata": read_onnx_facts(tiny_onnx).to_metadata()}
    Path(str(engine) + ".json").write_text(json.dumps(sidecar))
    with pytest.raises(GSAMError, match="built with profiles"):
        build_repository(tiny_onnx, tmp_path / "repo", engine=engine, trt_profiles=TWO_PROFILES[::-1], log=lambda s: None)
    build_repository(tiny_onnx, tmp_path / "repo", engine=engine, trt_profiles=TWO_PROFILES, log=lambda s: None)
    build_repository(tiny_onnx, tmp_path / "repo2", engine=engine, log=lambda s: None)
    for repo in ("repo", "repo2"):
        config = read_model_config(tmp_path / repo / "gsam_trt")
        assert [list(g.profile) for g in config.instance_group] == [["0", "1"]]
        assert (tmp_path / repo / "gsam_trt" / "1" / "model.plan").read_bytes() == b"serialized engine bytes"


# ---------------------------------------------------------------------------------------------------------------
# onnxruntime's silent fallback is refused.

def test_onnxruntime_refuses_a_provider_that_did_not_start(tiny_onnx, monkeypatch):
    import onnxruntime as ort

    from gsam.runtime.backends import load_backend

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime here has a working CUDA provider; the fallback cannot be provoked")
    # Claim CUDA is available: onnxruntime then falls back to the CPU, as it does when CUDA fails to start.
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(GSAMError, match="CUDAExecutionProvider did not start"):
        load_backend("onnxruntime", tiny_onnx, providers="cuda")


def test_onnxruntime_tensorrt_provider_takes_one_profile():
    from gsam.runtime.backends.onnx_runtime import execution_providers

    with pytest.raises(GSAMError, match="exactly one shape profile"):
        execution_providers("tensorrt", TWO_PROFILES)
    (trt, options), *_ = execution_providers("tensorrt", TWO_PROFILES[:1])
    assert trt == "TensorrtExecutionProvider" and options["trt_profile_opt_shapes"] == "image:1x3x128x128"


def test_fp16_on_an_fp32_export_converts_through_the_gate_before_trtexec(tiny_onnx, tmp_path):
    from gsam.export.metadata import read_onnx_facts

    args = ["export", "tensorrt", str(tiny_onnx), "--out", str(tmp_path / "tiny.plan"), "--precision", "fp16",
            "--print-trtexec"]
    for p in TWO_PROFILES:
        args += ["--profile", p.flag()]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    converted = tmp_path / "tiny.fp16.onnx"
    assert read_onnx_facts(converted).precision == "fp16"
    options = check_trtexec_line(result.output.strip().splitlines()[-1], TWO_PROFILES)
    assert options["--onnx"] == [str(converted)]
