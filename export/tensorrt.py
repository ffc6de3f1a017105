"""Build TensorRT engines from a gsam ONNX file (TensorRT 10 Python API, imported lazily).

Precision policy: with --fp16 / --bf16, LayerNorm, Softmax and the input normalization
stay in fp32 (SAM-family encoders overflow in fp16 LayerNorm; see docs/facts.md),
enforced with OBEY_PRECISION_CONSTRAINTS. Every build writes a JSON sidecar beside the
engine: profiles, precision, versions and the ONNX file's hash, which the runner reads.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import GSAMError
from ..facts import ModelFacts
from ..io import atomic_path, sha256_file, write_text_atomic
from .metadata import read_onnx_facts
from .profiles import ShapeProfile, format_shape

INSTALL_HINT = ("TensorRT is not installed: on a machine with an NVIDIA GPU run pip install 'gsam[gpu]' "
                "(TensorRT 10), or use NVIDIA's TensorRT / Triton container")


def require_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise GSAMError(INSTALL_HINT) from None
    return trt


def sidecar_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".json")


@dataclass
class EngineSidecar:
    """What an engine file cannot say about itself: its profiles, precision, builder and source ONNX."""

    profiles: list[ShapeProfile]
    facts: ModelFacts
    precision: str
    tensorrt_version: str
    raw: dict


def read_sidecar(engine: str | Path) -> EngineSidecar:
    side = sidecar_path(engine)
    if not side.is_file():
        raise GSAMError(f"{side}: missing engine sidecar; build engines with `gsam export tensorrt`")
    try:
        data = json.loads(side.read_text())
        profiles = [ShapeProfile.from_dict(p) for p in data["profiles"]]
        facts = ModelFacts.from_metadata(data["metadata"], source=str(side))
        return EngineSidecar(profiles, facts, data["precision"], data["tensorrt_version"], data)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, GSAMError):
            raise
        raise GSAMError(f"{side}: damaged engine sidecar ({type(exc).__name__}: {exc})") from None


@dataclass
class BuildSettings:
    profiles: list[ShapeProfile]
    precision: str = "fp32"  # fp32, fp16 or bf16
    workspace_gb: float = 4.0
    timing_cache: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise GSAMError(f"precision must be fp32, fp16 or bf16; got {self.precision!r}")
        if not self.profiles:
            raise GSAMError("give at least one --profile min=...,opt=...,max=...")


def trtexec_command(onnx_path: str | Path, engine: str | Path, settings: BuildSettings) -> str:
    """The trtexec line that builds the same engine (one --minShapes/--optShapes/--maxShapes set per profile)."""
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}"]
    for p in settings.profiles:
        args += [f"--minShapes=image:{format_shape(p.min)}", f"--optShapes=image:{format_shape(p.opt)}",
                 f"--maxShapes=image:{format_shape(p.max)}"]
    if settings.precision != "fp32":
        args += [f"--{settings.precision}", "--precisionConstraints=obey",
                 "--layerPrecisions=*LayerNorm*:fp32,*layer_norm*:fp32,*Softmax*:fp32,*softmax*:fp32"]
    args.append(f"--memPoolSize=workspace:{int(settings.workspace_gb * 1024)}M")
    if settings.timing_cache:
        args.append(f"--timingCacheFile={settings.timing_cache}")
    return " ".join(shlex.quote(a) for a in args)


def _keep_fp32_layers(trt, network) -> int:
    """Pin normalization, softmax and the input normalization (everything before the first conv) to fp32."""
    pinned, before_first_conv = 0, True
    sensitive = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.CONVOLUTION:
            before_first_conv = False
        name = layer.name.lower()
        if layer.type in sensitive or before_first_conv or "norm" in name or "softmax" in name:
            if layer.type in (trt.LayerType.CONSTANT, trt.LayerType.SHAPE, trt.LayerType.SLICE, trt.LayerType.CAST):
                continue
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                if layer.get_output(j).dtype == trt.float32:
                    layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def build_engine(onnx_path: str | Path, engine: str | Path, settings: BuildSettings, log=print) -> dict:
    """Build, write the engine atomically, write the sidecar; returns the sidecar's content."""
    onnx_path, engine = Path(onnx_path), Path(engine)
    facts = read_onnx_facts(onnx_path)
    for profile in settings.profiles:
        profile.validate(facts.min_size)
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
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
    if settings.precision != "fp32":
        config.set_flag(trt.BuilderFlag.FP16 if settings.precision == "fp16" else trt.BuilderFlag.BF16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = _keep_fp32_layers(trt, network)
    cache_path = Path(settings.timing_cache) if settings.timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    log(f"building a TensorRT {trt.__version__} engine ({settings.precision}, {len(settings.profiles)} profile(s))...")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise GSAMError(f"{onnx_path}: TensorRT could not build an engine (see the log above)")
    with atomic_path(engine) as tmp:
        tmp.write_bytes(bytes(serialized))
    if cache_path:
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    sidecar = {
        "gsam_version": __version__, "tensorrt_version": trt.__version__, "precision": settings.precision,
        "fp32_layers": pinned, "profiles": [p.to_dict() for p in settings.profiles],
        "onnx": str(onnx_path), "onnx_sha256": (digest := sha256_file(onnx_path)),
        "metadata": facts.with_lineage(onnx_file=onnx_path.name, onnx_sha256=digest).to_metadata(),
    }
    write_text_atomic(sidecar_path(engine), json.dumps(sidecar, indent=2))
    return sidecar
