"""Build TensorRT engines (10.x and 11.x) from a gsam ONNX file; TensorRT is imported lazily.

Precision lives in the ONNX, not in builder flags: the network is strongly typed
(`NetworkDefinitionCreationFlag.STRONGLY_TYPED`), so an fp16 or int8 (QDQ) ONNX written by
`gsam export onnx --precision ...` builds exactly the types its export gate verified on the
CPU, fp32 islands included. TensorRT 11 has no other mode (no FP16/BF16 builder flags, no
per-layer precision). Asking for --fp16 on an fp32 ONNX converts it first, through the
same gate. A weakly typed build (builder flags plus per-layer fp32 pins on the float layers
that overflow) remains only for a TensorRT without strong typing.

Every build writes a JSON sidecar beside the engine: profiles, precision, versions and the
ONNX file's hash, which the runner and `gsam triton build` read.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from gsam.errors import GSAMError
from gsam.io import atomic_path, sha256_file
from gsam.model.facts import ModelFacts
from gsam.precisions import onnx_precision

from .gate import GateRunners
from .metadata import read_onnx_facts
from .profiles import ShapeProfile, format_shape
from .sidecar import EngineSidecar

INSTALL_HINT = ("TensorRT is not installed: on a machine with an NVIDIA GPU run pip install 'gsam[gpu]' "
                "(TensorRT 10 or 11), or use NVIDIA's TensorRT / Triton container")


def require_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise GSAMError(INSTALL_HINT) from None
    return trt


# Op types computed in fp32 in a weakly typed reduced-precision build (fp16 overflows there).
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Div", "Exp", "Erf")


@dataclass
class BuildSettings:
    profiles: list[ShapeProfile]
    precision: str = "fp32"  # the engine's precision: the ONNX's, or fp16 converted from an fp32 ONNX
    workspace_gb: float = 4.0
    timing_cache: str | None = None

    def __post_init__(self) -> None:
        onnx_precision(self.precision, "precision")
        if not self.profiles:
            raise GSAMError("give at least one --profile min=...,opt=...,max=...")


def strongly_typed_supported(trt) -> bool:
    """TensorRT >= 9 (all of 10.x and 11.x) can build strongly typed networks."""
    return hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")


def check_engine_source(facts: ModelFacts, onnx_path: str | Path) -> None:
    """GSAMError unless TensorRT can build from this file: an int8 export made with --int8-scheme cpu
    stores activations as uint8, which TensorRT's explicit quantization does not take."""
    if facts.precision == "int8" and facts.extra.get("int8_scheme", "tensorrt") != "tensorrt":
        raise GSAMError(f"{onnx_path}: metadata field 'int8_scheme' is {facts.extra['int8_scheme']} (uint8 "
                        "activations, for onnxruntime on CPUs); TensorRT needs `gsam export onnx --precision int8 "
                        "--int8-scheme tensorrt`")


def plan_precision(onnx_precision: str, requested: str | None) -> str | None:
    """Which precision the ONNX must be converted to before building (None: build it as it is).

    A reduced-precision ONNX builds as exported; an fp32 ONNX is converted when fp16 is asked for.
    """
    if requested in (None, onnx_precision):
        return None
    if onnx_precision != "fp32":
        raise GSAMError(f"the ONNX file is already {onnx_precision}; build it without --{requested}, or start "
                        f"from the fp32 export")
    if requested != "fp16":
        raise GSAMError(f"--{requested} is not a build option: export an {requested} ONNX with "
                        f"`gsam export onnx --precision {requested}` and build that")
    return requested


def convert_for_engine(fp32_onnx: Path, out: Path, precision: str, profiles: list[ShapeProfile], *,
                       runners: GateRunners, log: Callable[[str], None] = print) -> Path:
    """Write the fp16 variant of an fp32 ONNX through the export gate, against the fp32 file (opened with
    `runners.candidate`) on random images of a few sizes inside the profiles."""
    import numpy as np

    from .gate_data import GateImages
    from .variants import make_variant

    rng = np.random.default_rng(0)
    # Each profile's smallest size and the smallest profile's opt size: inside the profiles, and quick
    # enough for a gate that runs on the CPU.
    smallest = min(profiles, key=lambda p: p.max[2] * p.max[3])
    sizes = dict.fromkeys([(p.min[2], p.min[3]) for p in profiles] + [(smallest.opt[2], smallest.opt[3])])
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    reference = runners.candidate(fp32_onnx)
    log(f"converting {fp32_onnx} to {precision} ({out}), checked against fp32 at "
        f"{', '.join(f'{i.shape[0]}x{i.shape[1]}' for i in images)}...")
    try:
        make_variant(fp32_onnx, out, precision, reference=reference, candidate=runners.candidate,
                     data=GateImages(images), log=log)
    finally:
        reference.close()
    return out


def trtexec_command(onnx_path: str | Path, engine: str | Path, settings: BuildSettings,
                    strongly_typed: bool = True, fp32_layers: list[str] | None = None) -> str:
    """The trtexec line that builds the same engine.

    Each profile's shapes follow its own `--profile=N` (trtexec refuses repeated shapes without it).
    Strongly typed (TensorRT 10 and 11; a no-op flag in 11): no precision flags, the ONNX decides.
    Weakly typed (only TensorRT 10 has the flags): --fp16/--bf16 with the named layers kept in fp32,
    one literal prefix and one `*` per pattern, as trtexec matches them.
    """
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}"]
    for i, p in enumerate(settings.profiles):
        args += [f"--profile={i}", f"--minShapes=image:{format_shape(p.min)}",
                 f"--optShapes=image:{format_shape(p.opt)}", f"--maxShapes=image:{format_shape(p.max)}"]
    if strongly_typed:
        args.append("--stronglyTyped")
    elif settings.precision in ("fp16", "bf16"):
        args.append(f"--{settings.precision}")
        if fp32_layers:
            args += ["--precisionConstraints=obey",
                     "--layerPrecisions=" + ",".join(f"{name}*:fp32" for name in fp32_layers)]
    elif settings.precision == "int8":
        args.append("--int8")
    args.append(f"--memPoolSize=workspace:{int(settings.workspace_gb * 1024)}M")
    if settings.timing_cache:
        args.append(f"--timingCacheFile={settings.timing_cache}")
    return " ".join(shlex.quote(a) for a in args)


def fp32_node_names(onnx_path: str | Path) -> list[str]:
    """Names of the ONNX nodes a weakly typed reduced-precision build keeps in fp32."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in FP32_OPS and n.name]


def _is_float_layer(trt, layer) -> bool:
    """A layer computing on float tensors: not shape arithmetic, not integer or bool outputs."""
    if layer.type in (trt.LayerType.SHAPE, trt.LayerType.CONSTANT, trt.LayerType.CAST):
        return False
    return all(layer.get_output(j).dtype in (trt.float32, trt.float16, trt.bfloat16)
               for j in range(layer.num_outputs))


def weak_keep_fp32_layers(trt, network) -> int:
    """Weak typing only: pin normalization, softmax, reductions and the float layers before the first
    convolution (the input normalization) to fp32; skip shape and integer layers, as trtexec does."""
    pinned, before_first_conv = 0, True
    sensitive = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE, trt.LayerType.UNARY}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.CONVOLUTION:
            before_first_conv = False
        if not _is_float_layer(trt, layer):
            continue
        if layer.type in sensitive or before_first_conv:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def weak_precision_flags(trt, config, precision: str) -> None:
    """Weak typing only: builder flags that allow reduced-precision kernels, constraints obeyed."""
    flags = {"fp16": trt.BuilderFlag.FP16, "bf16": trt.BuilderFlag.BF16, "int8": trt.BuilderFlag.INT8}
    if precision in flags:
        config.set_flag(flags[precision])
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)


def strong_network(trt, builder):
    return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))


def weak_network(trt, builder):
    return builder.create_network(0)  # explicit batch is the only mode since TensorRT 10


def build_engine(onnx_path: str | Path, engine: str | Path, settings: BuildSettings, *, runners: GateRunners,
                 log: Callable[[str], None] = print, converted: str | Path | None = None) -> EngineSidecar:
    """Build, write the engine atomically, write the sidecar; returns the sidecar.

    `settings.precision` different from the ONNX's converts an fp32 ONNX to it first (written to
    `converted`, default ENGINE.<precision>.onnx, gated with `runners`) and builds from that.
    """
    onnx_path, engine = Path(onnx_path), Path(engine)
    facts = read_onnx_facts(onnx_path)
    check_engine_source(facts, onnx_path)
    for profile in settings.profiles:
        profile.validate(facts.min_size)
    target = plan_precision(facts.precision, settings.precision)
    trt = require_tensorrt()
    strong = strongly_typed_supported(trt)
    if target and strong:
        onnx_path = convert_for_engine(onnx_path, Path(converted or engine.with_suffix(f".{target}.onnx")),
                                       target, settings.profiles, runners=runners, log=log)
        facts = read_onnx_facts(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = strong_network(trt, builder) if strong else weak_network(trt, builder)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise GSAMError(f"{onnx_path}: TensorRT's ONNX parser failed ({errors[:300]})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_gb * (1 << 30)))
    for profile in settings.profiles:
        shapes = builder.create_optimization_profile()
        shapes.set_shape("image", profile.min, profile.opt, profile.max)
        config.add_optimization_profile(shapes)
    pinned = 0
    if not strong:
        weak_precision_flags(trt, config, settings.precision)
        if settings.precision in ("fp16", "bf16"):
            pinned = weak_keep_fp32_layers(trt, network)
    cache_path = Path(settings.timing_cache) if settings.timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    typing = "strongly typed" if strong else "weakly typed"
    log(f"building a TensorRT {trt.__version__} engine ({settings.precision}, {typing}, "
        f"{len(settings.profiles)} profile(s))...")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise GSAMError(f"{onnx_path}: TensorRT could not build an engine (see the log above)")
    with atomic_path(engine) as tmp:
        tmp.write_bytes(bytes(serialized))
    if cache_path:
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    engine_facts = replace(facts.with_lineage(onnx_file=onnx_path.name, onnx_sha256=sha256_file(onnx_path)),
                           precision=settings.precision)
    sidecar = EngineSidecar(tuple(settings.profiles), engine_facts, str(trt.__version__))
    sidecar.write(engine)
    return sidecar
