"""Build strongly typed TensorRT engines (10.x and 11.x) from a gsam ONNX file; TensorRT is imported lazily.

Precision lives in the ONNX, not in builder flags: the network is strongly typed
(`NetworkDefinitionCreationFlag.STRONGLY_TYPED`), so an fp16 or int8 (QDQ) ONNX written by
`gsam export onnx --precision ...` builds exactly the types its export gate verified on the
CPU, fp32 islands included. TensorRT 11 has no other mode; every TensorRT the `gpu` extra allows
has it, so there is no weakly typed path. Asking for --fp16 on an fp32 ONNX converts it first,
through the same gate.

Typed for a checker: each function that touches TensorRT imports the module itself (after
`require_tensorrt()`, which turns a missing install into a one-line hint), and TensorRT objects
passed between functions carry their classes as annotations, so mypy checks every call against
the stubs of each supported release (tests/test_tensorrt_types.py).

fp32 means fp32: TensorRT allows TF32 for fp32 layers by default (BuilderFlag.TF32 "Enabled by
default", its docstring), which rounds their inputs to 10-bit mantissas; gsam clears the flag unless
the build asks for TF32 (`--tf32`), and the sidecar records the choice.

Every build writes a JSON sidecar beside the engine: profiles, precision, TF32, versions, the GPU it
was built on and the ONNX file's hash, which the runner and `gsam triton build` read. The engine and
its sidecar are staged together and appear together.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from gsam.errors import GSAMError
from gsam.io import atomic_path, sha256_file
from gsam.model.facts import ModelFacts
from gsam.precisions import onnx_precision

from .gate import GateRunners
from .gpu import cuda_gpu
from .metadata import read_onnx_facts
from .profiles import ShapeProfile, format_shape
from .sidecar import EngineSidecar

if TYPE_CHECKING:
    import tensorrt as trt

INSTALL_FIX = ("on a machine with an NVIDIA GPU run pip install 'gsam[gpu]' --extra-index-url https://pypi.nvidia.com "
               "(the TensorRT of the Triton release in docs/gpu.md; its libraries come from NVIDIA's index), or build "
               "inside NVIDIA's container of the release you serve with")
INSTALL_HINT = f"TensorRT is not installed: {INSTALL_FIX}"


def require_tensorrt() -> None:
    """GSAMError with the install hint unless `import tensorrt` works; an installed TensorRT whose libraries do
    not load (PyPI's placeholder libs) says so."""
    try:
        import tensorrt  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "tensorrt":
            raise GSAMError(f"TensorRT is installed but does not import (no module {exc.name!r}); "
                            f"{INSTALL_FIX}") from None
        raise GSAMError(INSTALL_HINT) from None
    except (ImportError, OSError) as exc:
        raise GSAMError(f"TensorRT is installed but its libraries do not load ({str(exc).splitlines()[0][:160]}); "
                        f"{INSTALL_FIX}") from None


@dataclass
class BuildSettings:
    profiles: list[ShapeProfile]
    precision: str = "fp32"  # the engine's precision: the ONNX's, or fp16 converted from an fp32 ONNX
    workspace_gb: float = 4.0
    timing_cache: str | None = None
    tf32: bool = False  # allow TF32 in fp32 layers (TensorRT's default); off, fp32 layers compute in fp32
    device: int = 0  # the CUDA device that builds (and that the engine is for)

    def __post_init__(self) -> None:
        onnx_precision(self.precision, "precision")
        if not self.profiles:
            raise GSAMError("give at least one --profile min=...,opt=...,max=...")


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
        raise GSAMError(f"the ONNX file is already {onnx_precision}; build it without --precision {requested}, or start "
                        f"from the fp32 export")
    if requested != "fp16":
        raise GSAMError(f"--precision {requested} is not a build option: export an {requested} ONNX with "
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


def trtexec_command(onnx_path: str | Path, plan_path: str | Path, settings: BuildSettings) -> str:
    """The trtexec line that builds the same engine: strongly typed (the ONNX decides every type;
    `--stronglyTyped` is required in TensorRT 10 and a no-op in 11), each profile's shapes after its own
    `--profile=N` (trtexec refuses repeated shapes without it)."""
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={plan_path}"]
    for i, p in enumerate(settings.profiles):
        args += [f"--profile={i}", f"--minShapes=image:{format_shape(p.min)}",
                 f"--optShapes=image:{format_shape(p.opt)}", f"--maxShapes=image:{format_shape(p.max)}"]
    args += ["--stronglyTyped", f"--memPoolSize=workspace:{int(settings.workspace_gb * 1024)}M"]
    if not settings.tf32:
        args.append("--noTF32")
    if settings.timing_cache:
        args.append(f"--timingCacheFile={settings.timing_cache}")
    return " ".join(shlex.quote(a) for a in args)


def parse_onnx(builder: trt.Builder, logger: trt.ILogger, onnx_path: Path) -> trt.INetworkDefinition:
    """A strongly typed network from the ONNX file. The STRONGLY_TYPED bit is read from the enum: it is
    1 in 10.x and 0 in 11.x (where the flag is deprecated and every network is strongly typed)."""
    import tensorrt as trt

    network: trt.INetworkDefinition = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser: trt.OnnxParser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise GSAMError(f"{onnx_path}: TensorRT's ONNX parser failed ({errors[:300]})")
    return network


def builder_config(builder: trt.Builder, settings: BuildSettings) -> trt.IBuilderConfig:
    """Workspace limit, TF32 only when asked for, and one optimization profile per ShapeProfile, in order."""
    import tensorrt as trt

    config: trt.IBuilderConfig = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_gb * (1 << 30)))
    if settings.tf32:
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    for profile in settings.profiles:
        shapes: trt.IOptimizationProfile = builder.create_optimization_profile()
        shapes.set_shape("image", profile.min, profile.opt, profile.max)
        config.add_optimization_profile(shapes)
    return config


def attach_timing_cache(config: trt.IBuilderConfig, path: Path | None,
                        log: Callable[[str], None] = print) -> trt.ITimingCache:
    """The timing cache the build uses (keep it alive until the engine is built): the file's, or a fresh
    one when there is no file or TensorRT refuses it (`set_timing_cache` returns False for a cache made
    on another GPU or TensorRT version; the file is then replaced after the build)."""
    data = path.read_bytes() if path is not None and path.exists() else b""
    cache: trt.ITimingCache | None = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    log(f"{path}: TensorRT refused this timing cache (made on another GPU or TensorRT version); building "
        "with a fresh one, which replaces the file")
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise GSAMError("TensorRT refused a fresh timing cache; build without --timing-cache")
    return cache


def serialized_engine(builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig,
                      onnx_path: Path) -> bytes:
    serialized: trt.IHostMemory | None = builder.build_serialized_network(network, config)
    if serialized is None:
        raise GSAMError(f"{onnx_path}: TensorRT could not build an engine (see the log above)")
    return bytes(serialized)


def build_engine(onnx_path: str | Path, plan_path: str | Path, settings: BuildSettings, *, runners: GateRunners,
                 log: Callable[[str], None] = print, converted: str | Path | None = None) -> EngineSidecar:
    """Build; write the engine and its sidecar together, then the timing cache; returns the sidecar.

    `settings.precision` different from the ONNX's converts an fp32 ONNX to it first (written to
    `converted`, default ENGINE.<precision>.onnx, gated with `runners`) and builds from that.
    Everything that can fail happens before the first file is written.
    """
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    facts = read_onnx_facts(onnx_path)
    check_engine_source(facts, onnx_path)
    for profile in settings.profiles:
        profile.validate(facts.min_size)
    target = plan_precision(facts.precision, settings.precision)
    require_tensorrt()
    import tensorrt as trt

    if target:
        onnx_path = convert_for_engine(onnx_path, Path(converted or plan_path.with_suffix(f".{target}.onnx")),
                                       target, settings.profiles, runners=runners, log=log)
        facts = read_onnx_facts(onnx_path)
    gpu = cuda_gpu(settings.device)
    if gpu is not None:
        import torch

        torch.cuda.set_device(settings.device)  # TensorRT builds on the current CUDA device
    logger: trt.Logger = trt.Logger(trt.Logger.WARNING)
    builder: trt.Builder = trt.Builder(logger)
    network: trt.INetworkDefinition = parse_onnx(builder, logger, onnx_path)
    config: trt.IBuilderConfig = builder_config(builder, settings)
    cache_path = Path(settings.timing_cache) if settings.timing_cache else None
    cache: trt.ITimingCache = attach_timing_cache(config, cache_path, log)
    log(f"building a strongly typed TensorRT {trt.__version__} engine ({settings.precision}"
        f"{', TF32 allowed' if settings.tf32 else ''}, {len(settings.profiles)} profile(s)"
        f"{f' on {gpu.describe()}' if gpu else ''})...")
    data = serialized_engine(builder, network, config, onnx_path)
    cache_data = bytes(cache.serialize()) if cache_path else b""
    engine_facts = replace(facts.with_lineage(onnx_file=onnx_path.name, onnx_sha256=sha256_file(onnx_path)),
                           precision=settings.precision)
    sidecar = EngineSidecar(tuple(settings.profiles), engine_facts, str(trt.__version__), gpu=gpu, tf32=settings.tf32)
    sidecar.write_with_engine(plan_path, data)
    if cache_path:
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(cache_data)
    return sidecar
