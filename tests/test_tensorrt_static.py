"""TensorRT without a GPU: the code checked against TensorRT's own API lists and ONNX operator table,
the trtexec line against trtexec's option rules, and the Triton configs for several profiles.

The API lists live in shared/tensorrt_api/ beside the repository (GSAM_TENSORRT_API overrides the
folder); the tests that need them are skipped with the reason when it is absent.
"""

from __future__ import annotations

import ast
import os
import shlex
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from gsam.cli import cli
from gsam.errors import GSAMError
from gsam.export.profiles import parse_profile
from gsam.export.tensorrt import BuildSettings, fp32_node_names, plan_precision, trtexec_command

REPO = Path(__file__).parents[1]
API_DIR = Path(os.environ.get("GSAM_TENSORRT_API", REPO.parent / "shared" / "tensorrt_api"))
needs_api = pytest.mark.skipif(not API_DIR.is_dir(),
                               reason=f"{API_DIR} is absent (TensorRT API lists; set GSAM_TENSORRT_API)")
TWO_PROFILES = [parse_profile("min=1x3x32x32,opt=1x3x128x128,max=2x3x256x256"),
                parse_profile("min=1x3x256x256,opt=1x3x512x512,max=1x3x1024x1024")]


# ---------------------------------------------------------------------------------------------------------------
# The TensorRT API the code uses exists in each TensorRT version whose code path uses it.

# Our variable names -> the TensorRT class they hold.
VARIABLE_CLASSES = {"builder": "Builder", "network": "INetworkDefinition", "config": "IBuilderConfig",
                    "parser": "OnnxParser", "shapes": "IOptimizationProfile", "layer": "ILayer",
                    "cache": "ITimingCache", "logger": "Logger", "serialized": "IHostMemory",
                    "self.engine": "ICudaEngine", "self.context": "IExecutionContext"}
# (class, method) -> the class of what it returns, where the code chains on it.
RETURNS = {("ILayer", "get_output"): "ITensor", ("IBuilderConfig", "get_timing_cache"): "ITimingCache",
           ("INetworkDefinition", "get_layer"): "ILayer", ("Runtime", "deserialize_cuda_engine"): "ICudaEngine",
           ("ICudaEngine", "create_execution_context"): "IExecutionContext"}
# Set by the package's Python code, not by the bindings the lists are extracted from.
PYTHON_LEVEL = {"__version__"}
# Bound in TensorRT's python/src at every tag we check, but absent from the lists: their extraction misses
# classes whose `py::class_<...>(m, "Name")` spans several lines (read in infer/pyCore.cpp at v10.0.0,
# v10.13.0 and v11.1: `.def("set_shape", ...)` on IOptimizationProfile).
MISSED_BY_THE_LISTS = {"IOptimizationProfile.set_shape"}
WEAK_FUNCTIONS = {"weak_keep_fp32_layers", "weak_precision_flags", "weak_network", "_is_float_layer"}
STRONG_FUNCTIONS = {"strong_network"}
TENSORRT_CODE = [REPO / "export" / "tensorrt.py", REPO / "runtime" / "backends" / "tensorrt_engine.py"]


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


def tensorrt_uses(source: str) -> dict[str, set[str]]:
    """Function name -> the `Class.member` (or module-level name) TensorRT items it uses."""
    uses: dict[str, set[str]] = {}
    for func in ast.walk(ast.parse(source)):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        found = uses.setdefault(func.name, set())
        for node in ast.walk(func):
            if not isinstance(node, ast.Attribute):
                continue
            dotted = _dotted(node)
            if dotted and dotted.startswith("trt."):
                found.add(dotted[4:])
            elif (owner := _class_of(node.value)) is not None:
                found.add(f"{owner}.{node.attr}")
    return uses


def api_list(version: str) -> set[str]:
    lines = (API_DIR / f"tensorrt-{version}.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def missing_from(api: set[str], items: set[str]) -> list[str]:
    def present(item: str) -> bool:
        if item in api or item in PYTHON_LEVEL or item in MISSED_BY_THE_LISTS:
            return True
        # Logger severities are exported enum values: the bindings list them at module level.
        return item.startswith("Logger.") and item.split(".", 1)[1] in api
    return sorted(i for i in items if not present(i))


def _uses_by_path() -> dict[str, set[str]]:
    paths = {"common": set(), "weak": set(), "strong": set()}
    for file in TENSORRT_CODE:
        for name, items in tensorrt_uses(file.read_text()).items():
            key = "weak" if name in WEAK_FUNCTIONS else "strong" if name in STRONG_FUNCTIONS else "common"
            paths[key] |= items
    return paths


def test_uses_are_found_in_the_code():
    uses = _uses_by_path()
    assert {"NetworkDefinitionCreationFlag.STRONGLY_TYPED", "Builder.create_network"} <= uses["strong"]
    assert {"BuilderFlag.FP16", "ILayer.precision", "ILayer.set_output_type", "ITensor.dtype"} <= uses["weak"]
    assert {"IExecutionContext.execute_async_v3", "IExecutionContext.set_input_shape", "OnnxParser.parse_from_file",
            "Builder.build_serialized_network", "IOptimizationProfile.set_shape",
            "Runtime.deserialize_cuda_engine"} <= uses["common"]
    assert not uses["common"] & {"BuilderFlag.FP16", "BuilderFlag.BF16", "ILayer.precision", "ILayer.set_output_type"}


@needs_api
@pytest.mark.parametrize("version, paths", [("10.0.0", ("common", "weak", "strong")),
                                            ("10.13.0", ("common", "strong")), ("11.1", ("common", "strong"))])
def test_tensorrt_api_used_exists_in_each_version(version, paths):
    uses, api = _uses_by_path(), api_list(version)
    for path in paths:
        assert not missing_from(api, uses[path]), f"TensorRT {version} lacks these ({path} path)"


@needs_api
def test_the_api_check_catches_weak_typing_on_tensorrt_11():
    code = "def strong_network(trt, builder, config):\n    config.set_flag(trt.BuilderFlag.FP16)\n"
    assert missing_from(api_list("11.1"), tensorrt_uses(code)["strong_network"]) == ["BuilderFlag.FP16"]
    assert missing_from(api_list("10.13.0"), tensorrt_uses(code)["strong_network"]) == []


# ---------------------------------------------------------------------------------------------------------------
# Every operator of the fp32, fp16 and int8 exports, with its data type, is one TensorRT's ONNX parser takes.

ONNX_TO_TRT_TYPE = {onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16",
                    onnx.TensorProto.BFLOAT16: "BF16", onnx.TensorProto.INT32: "INT32",
                    onnx.TensorProto.INT64: "INT64", onnx.TensorProto.INT8: "INT8", onnx.TensorProto.UINT8: "UINT8",
                    onnx.TensorProto.BOOL: "BOOL"}


def parser_ops() -> dict[str, set[str]]:
    ops = {}
    for line in (API_DIR / "onnx-ops-tensorrt-10.0.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        op, supported, *types = line.split("\t")
        if supported == "Y":
            ops[op] = {t.strip().replace("INF64", "INT64") for t in (types[0] if types else "").split(",")}
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


@needs_api
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
# The trtexec line follows trtexec's option rules (samples/common/sampleOptions.cpp at each tag).

TRTEXEC_OPTIONS = {  # build options of trtexec that the line may use, per TensorRT version
    "10": {"--onnx", "--saveEngine", "--profile", "--minShapes", "--optShapes", "--maxShapes", "--stronglyTyped",
           "--memPoolSize", "--timingCacheFile", "--fp16", "--bf16", "--int8", "--precisionConstraints",
           "--layerPrecisions"},
    "11": {"--onnx", "--saveEngine", "--profile", "--minShapes", "--optShapes", "--maxShapes", "--stronglyTyped",
           "--memPoolSize", "--timingCacheFile"},
}


def check_trtexec_line(line: str, profiles, version: str) -> dict[str, list[str]]:
    """Raise AssertionError where trtexec would refuse the line; returns option -> values."""
    args = shlex.split(line)
    assert args[0] == "trtexec"
    options: dict[str, list[str]] = {}
    for i, arg in enumerate(args[1:], 1):
        key, _, value = arg.partition("=")
        assert key in TRTEXEC_OPTIONS[version], f"trtexec {version} has no {key}"
        options.setdefault(key, []).append(value)
        if key == "--profile":  # its shapes follow it directly, indices in order
            assert int(value) == len(options["--profile"]) - 1
            assert sorted(a.partition("=")[0] for a in args[i + 1:i + 4]) == ["--maxShapes", "--minShapes",
                                                                               "--optShapes"]
    assert len(options["--profile"]) == len(profiles)
    for key, field in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
        assert options[key] == [f"image:{'x'.join(map(str, getattr(p, field)))}" for p in profiles]
    for pattern in ",".join(options.get("--layerPrecisions", [])).split(","):
        if pattern:
            assert pattern.count("*") <= 1 and pattern.endswith(":fp32")
    return options


@pytest.mark.parametrize("version", ["10", "11"])
def test_strongly_typed_trtexec_line_for_two_profiles(version):
    line = trtexec_command("model.fp16.onnx", "model.plan", BuildSettings(TWO_PROFILES, "fp16"))
    options = check_trtexec_line(line, TWO_PROFILES, version)
    assert "--stronglyTyped" in options and not {"--fp16", "--bf16", "--layerPrecisions"} & set(options)


def test_weakly_typed_trtexec_line_pins_real_node_names(tiny_onnx):
    names = fp32_node_names(tiny_onnx)
    line = trtexec_command(tiny_onnx, "model.plan", BuildSettings(TWO_PROFILES, "fp16"), strongly_typed=False,
                           fp32_layers=names)
    options = check_trtexec_line(line, TWO_PROFILES, "10")
    patterns = options["--layerPrecisions"][0].split(",")
    graph_names = [n.name for n in onnx.load(str(tiny_onnx)).graph.node]
    assert len(patterns) == len(names) > 0
    for pattern in patterns:  # the literal prefix matches a node of the graph
        assert any(name.startswith(pattern.split("*")[0]) for name in graph_names)
    with pytest.raises(AssertionError, match="trtexec 11 has no --fp16"):
        check_trtexec_line(line, TWO_PROFILES, "11")


def test_print_trtexec_needs_no_tensorrt(tiny_onnx):
    args = ["export", "tensorrt", str(tiny_onnx), "--out", "tiny.plan", "--print-trtexec"]
    for p in TWO_PROFILES:
        args += ["--profile", p.flag()]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    check_trtexec_line(result.output.strip().splitlines()[-1], TWO_PROFILES, "11")


def test_precision_plan():
    assert plan_precision("fp32", None) is None and plan_precision("fp16", None) is None
    assert plan_precision("fp16", "fp16") is None and plan_precision("fp32", "fp16") == "fp16"
    with pytest.raises(GSAMError, match="already int8"):
        plan_precision("int8", "fp16")
    with pytest.raises(GSAMError, match="export onnx --precision int8"):
        plan_precision("fp32", "int8")


# ---------------------------------------------------------------------------------------------------------------
# Triton configs serve every profile; warm-ups lie inside them.

def _inside(shape, profile) -> bool:
    return profile.contains(tuple(shape))


def test_tensorrt_config_lists_every_profile_in_one_group_with_warmups_inside(tiny_onnx):
    from gsam.export.metadata import read_onnx_facts
    from gsam.runtime.triton.repository import config_text, parse_config, tensorrt_config

    config = parse_config(config_text(tensorrt_config("gsam_trt", read_onnx_facts(tiny_onnx), TWO_PROFILES), "t"))
    assert config.platform == "tensorrt_plan"
    assert [list(g.profile) for g in config.instance_group] == [["0", "1"]]
    shapes = [list(w.inputs["image"].dims) for w in config.model_warmup]
    assert len(shapes) == 2 and all(_inside(s, p) for s, p in zip(shapes, TWO_PROFILES))


# TensorRT accelerator parameters Triton's onnxruntime backend accepts (src/onnxruntime.cc); others fail the load.
ONNXRUNTIME_BACKEND_TRT_KEYS = {
    "precision_mode", "max_workspace_size_bytes", "trt_max_partition_iterations", "trt_min_subgraph_size",
    "trt_engine_cache_enable", "trt_engine_cache_path", "trt_engine_cache_prefix", "trt_layer_norm_fp32_fallback",
    "trt_timing_cache_enable", "trt_timing_cache_path", "trt_builder_optimization_level", "trt_cuda_graph_enable",
    "trt_profile_min_shapes", "trt_profile_max_shapes", "trt_profile_opt_shapes"}


def test_onnx_config_takes_one_profile_and_warms_up_inside_it(tiny_onnx):
    from gsam.export.metadata import read_onnx_facts
    from gsam.runtime.triton.repository import config_text, onnx_config, parse_config

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
    from gsam.runtime.triton.repository import read_model_config

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

    from gsam.export.metadata import read_onnx_facts
    from gsam.runtime.triton.repository import build_repository, read_model_config

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

    args = ["export", "tensorrt", str(tiny_onnx), "--out", str(tmp_path / "tiny.plan"), "--fp16", "--print-trtexec"]
    for p in TWO_PROFILES:
        args += ["--profile", p.flag()]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    converted = tmp_path / "tiny.fp16.onnx"
    assert read_onnx_facts(converted).precision == "fp16"
    options = check_trtexec_line(result.output.strip().splitlines()[-1], TWO_PROFILES, "11")
    assert options["--onnx"] == [str(converted)]
