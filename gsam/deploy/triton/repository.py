"""Write a Triton model repository from a gsam ONNX file (and optionally a TensorRT engine).

Each config is a `ModelConfig` message of Triton's own schema (tritonclient's
model_config_pb2), filled from the model's facts, so input/output names and dims always
match the model, and written with protobuf's text format. The model's facts and its lineage
(the ONNX file's name and sha256) travel as the config's string parameters, where the Triton
client reads them back.

gsam_python (tensors in) batches with Triton's dynamic batcher: the config has a batch
dimension, and the batcher only joins requests whose shapes are equal, so a batch is always
one image size; the python model concatenates them and runs onnxruntime once. gsam_image
(encoded bytes in, PNG out) takes one image per request. Both carry `max_pixels`, the most
pixels one request may hold; gsam_onnx and gsam_trt keep `max_batch_size: 0`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gsam.runtime.triton_python
from gsam.errors import GSAMError
from gsam.export.metadata import read_onnx_facts
from gsam.export.profiles import ShapeProfile, exclusive_shape, format_shape, onnxruntime_trt_options
from gsam.io import atomic_path, sha256_file, write_text_atomic
from gsam.model.facts import ModelFacts
from gsam.pixels.bounds import DEFAULT_TILE_OVERLAP, RequestBounds
from gsam.runtime.serving.model_config import schema
from gsam.runtime.triton_names import ENGINE_MODEL, IMAGE_MODEL, ONNX_MODEL, TENSOR_MODEL

from .compute_target import ComputeTarget, choose_compute
from .engine_config import allocation_strategy, engine_batching, graph_batches

# The code Triton's python backend loads lives with what runs a model (runtime/triton_python/).
PYTHON_MODEL_SOURCE = Path(gsam.runtime.triton_python.__file__).with_name("python_model.py")
COMPUTE_SOURCE = Path(gsam.runtime.triton_python.__file__).with_name("compute.py")
# gsam.pixels travels beside model.py as the package gsam_pixels (the python model imports nothing else of gsam).
PIXELS_PACKAGE = "gsam_pixels"


@dataclass(frozen=True)
class Tiling:
    """Requests above max_pixels run in overlapping tiles instead of being refused (`--oversize-tile`);
    with the bound, written by gsam.pixels.bounds (None: its default)."""

    tile: int = 0  # 0: refuse requests above max_pixels
    overlap: int = DEFAULT_TILE_OVERLAP
    max_tiled_pixels: int | None = None  # the largest image a tiled request may hold


WARMUP_SHAPE = (1, 3, 64, 96)


@dataclass(frozen=True)
class Batching:
    """Triton's dynamic batcher for gsam_python: largest batch, preferred sizes, queue delay."""

    max_batch_size: int = 8
    preferred: tuple[int, ...] = ()
    max_queue_delay_us: int = 2000

    def __post_init__(self) -> None:
        if self.max_batch_size < 0 or self.max_queue_delay_us < 0:
            raise GSAMError(f"--max-batch and --queue-delay-us must be >= 0; got {self.max_batch_size}, "
                            f"{self.max_queue_delay_us}")
        bad = [p for p in self.preferred if not 1 <= p <= self.max_batch_size]
        if bad:
            raise GSAMError(f"--preferred-batch {bad[0]} is outside 1..--max-batch ({self.max_batch_size})")


def new_config(name: str, facts: ModelFacts, max_batch_size: int = 0, **fields):
    """A ModelConfig with gsam's inputs, outputs and parameters; `fields` set the backend or platform.

    With max_batch_size > 0 Triton owns the batch axis, so dims leave it out."""
    mc = schema()
    config = mc.ModelConfig(name=name, max_batch_size=max_batch_size, **fields)
    batch = [] if max_batch_size > 0 else [-1]
    image_type = mc.TYPE_UINT8 if facts.input_dtype == "uint8" else mc.TYPE_FP32
    config.input.add(name="image", data_type=image_type, dims=batch + [3, -1, -1])
    config.output.add(name="logits", data_type=mc.TYPE_FP32, dims=batch + [facts.num_classes, -1, -1])
    config.output.add(name="mask", data_type=mc.TYPE_INT32, dims=batch + [-1, -1])
    set_parameters(config, facts.to_metadata())
    return config


def set_parameters(config, values: dict[str, str]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def add_instances(config, count: int, gpu: bool, profiles: list[str] | None = None) -> None:
    mc = schema()
    kind = mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=count, kind=kind, profile=profiles or [])


def warmup_shape(facts: ModelFacts, profile: ShapeProfile | None = None) -> tuple[int, int, int, int]:
    """A small request shape: WARMUP_SHAPE raised to the model's minimum side, and moved inside
    `profile` (a warm-up outside every profile fails, and the model never becomes ready)."""
    shape = (1, 3, max(facts.min_size, WARMUP_SHAPE[2]), max(facts.min_size, WARMUP_SHAPE[3]))
    if profile is None:
        return shape
    return tuple(min(max(s, lo), hi) for s, lo, hi in zip(shape, profile.min, profile.max))  # type: ignore


def _add_warmup_request(config, name: str, shape: tuple[int, ...]) -> None:
    """A warm-up that sends exactly `shape`: with Triton batching the batch is the warm-up's batch_size and
    the dims leave it out; without, the dims carry it and batch_size stays 1."""
    batched = config.max_batch_size > 0
    warmup = config.model_warmup.add(name=name, batch_size=shape[0] if batched else 1)
    warmup.inputs["image"].data_type = config.input[0].data_type
    warmup.inputs["image"].dims.extend(shape[1:] if batched else shape)
    warmup.inputs["image"].random_data = True


def add_warmup(config, facts: ModelFacts, profiles: list[ShapeProfile] | None = None) -> None:
    """One random request at a small size (one per profile), so the first real request does not pay
    for initialization."""
    for i, profile in enumerate(profiles or [None]):
        _add_warmup_request(config, "warmup" if profile is None else f"warmup_profile_{i}",
                            warmup_shape(facts, profile))


def add_profile_warmups(config, profiles: list[ShapeProfile]) -> None:
    """One request per profile at a shape only that profile contains (its opt where unique, with the batch
    at most the config's max_batch_size): the tensorrt backend sends a request to a profile that contains
    it, so a shape two profiles share may warm the other one twice and this one never."""
    for i, profile in enumerate(profiles):
        shape = exclusive_shape(profiles, i, config.max_batch_size or None)
        if shape is None:
            raise GSAMError(f"profile {i} ({profile.name}) lies inside the other profiles: no request is sure to "
                            "reach it, nor its warm-up; drop it, or give profiles that do not overlap "
                            "(`gsam export profiles` suggests such)")
        _add_warmup_request(config, f"warmup_profile_{i}_{format_shape(shape)}", shape)


def python_config(name: str, facts: ModelFacts, *, bounds: RequestBounds, instances: int = 1, gpu: bool = False,
                  batching: Batching | None = Batching(), threads: int = 0):
    """Tensors in: `image` (FP32) or `image_uint8` (UINT8), one of the two per request (Triton
    types each input once, so the two dtypes are two optional inputs); the model converts either to
    what the ONNX file takes."""
    mc = schema()
    config = new_config(name, facts, batching.max_batch_size if batching else 0, backend="python")
    config.input[0].data_type = mc.TYPE_FP32
    config.input[0].optional = True
    config.input.add(name="image_uint8", data_type=mc.TYPE_UINT8, dims=list(config.input[0].dims), optional=True)
    if batching and batching.max_batch_size > 0:
        config.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_us
        config.dynamic_batching.preferred_batch_size.extend(batching.preferred)
    add_instances(config, instances, gpu)
    set_parameters(config, {"intra_op_threads": str(threads), **bounds.parameters()})
    add_warmup(config, facts)
    return config


def image_config(name: str, facts: ModelFacts, *, compute: ComputeTarget, bounds: RequestBounds | None = None,
                 instances: int = 1, gpu: bool = False, threads: int = 0):
    """Encoded image bytes in (`image_bytes`, TYPE_STRING), the mask as PNG bytes out (`mask_png`,
    `overlay_png` and the decode/compute/encode split `timings_ms` when a request asks for them); class
    names, palette and the compute model it sends pixels to in the parameters."""
    mc = schema()
    config = mc.ModelConfig(name=name, max_batch_size=0, backend="python")
    config.input.add(name="image_bytes", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="mask_png", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="overlay_png", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="timings_ms", data_type=mc.TYPE_FP32, dims=[3])
    set_parameters(config, facts.to_metadata())
    bounds = bounds or RequestBounds.build(input_dtype=facts.input_dtype)
    set_parameters(config, {"intra_op_threads": str(threads), **bounds.parameters(),
                            "overlay_palette": json.dumps([list(c) for c in facts.colours]), **compute.parameters()})
    add_instances(config, instances, gpu and not compute.model)  # BLS: the compute model holds the device
    return config


def onnx_config(name: str, facts: ModelFacts, *, instances: int = 1, gpu: bool = True,
                trt_profiles: list[ShapeProfile] | None = None, accelerator_precision: str = "fp32"):
    """Triton's onnxruntime backend; with a profile, its TensorRT accelerator gets that profile's shapes.

    Exactly one profile: onnxruntime's TensorRT provider keeps its execution context on the first
    of several, so requests in the others would fail or rebuild. The warm-up lies inside it.
    """
    if trt_profiles and len(trt_profiles) > 1:
        raise GSAMError(f"{name}: onnxruntime's TensorRT accelerator serves only one profile; got "
                        f"{len(trt_profiles)} ({', '.join(p.name for p in trt_profiles)}). Give it one, and serve "
                        "several profiles from a TensorRT engine (gsam_trt)")
    config = new_config(name, facts, backend="onnxruntime", default_model_filename="model.onnx")
    add_instances(config, instances, gpu)
    if trt_profiles:
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accelerator.parameters.update({"precision_mode": accelerator_precision.upper(), "trt_engine_cache_enable": "true",
                                       "trt_engine_cache_path": "/tmp/gsam_trt_cache",
                                       **onnxruntime_trt_options(trt_profiles)})
    add_warmup(config, facts, trt_profiles or None)
    return config


def tensorrt_config(name: str, facts: ModelFacts, profiles: list[ShapeProfile], *, instances: int = 1,
                    cuda_graphs: bool = False):
    """One instance group listing every profile: the backend picks, per request, a profile that contains
    it (Triton does not route requests between instance groups by shape). One warm-up per profile, at a
    shape only that profile contains. Batching, per-profile context memory and CUDA graphs as
    engine_config.py decides them."""
    if not profiles:
        raise GSAMError(f"{name}: a TensorRT model needs its engine's profiles (--profile or the engine's sidecar)")
    batching = engine_batching(profiles)
    config = new_config(name, facts, batching.max_batch_size, platform="tensorrt_plan",
                        default_model_filename="model.plan")
    if batching.max_batch_size:
        config.dynamic_batching.SetInParent()
    add_instances(config, instances, True, [str(i) for i in range(len(profiles))])
    strategy = allocation_strategy(profiles)
    if strategy:
        set_parameters(config, {"execution_context_allocation_strategy": strategy})
    if cuda_graphs:
        if not batching.max_batch_size:
            raise GSAMError(f"--cuda-graphs: Triton's tensorrt backend never launches the graphs of a model "
                            f"without batching; {batching.reason}")
        config.optimization.cuda.graphs = True
        for batch in graph_batches(profiles, batching):  # no input dims: each profile captures its own opt shape
            config.optimization.cuda.graph_spec.add(batch_size=batch)
    add_profile_warmups(config, profiles)
    return config


def check_engine_profiles(engine: Path, engine_profiles: list[ShapeProfile], profiles: list[ShapeProfile]) -> None:
    """An engine serves the config's profile indices only if its sidecar lists the same profiles, in order."""
    if profiles and list(profiles) != list(engine_profiles):
        raise GSAMError(f"{engine}: the engine was built with profiles "
                        f"{', '.join(p.name for p in engine_profiles)} but --profile gives "
                        f"{', '.join(p.name for p in profiles)}; pass the engine's profiles, in its order, or none")


def config_text(config, source: str) -> str:
    from google.protobuf import text_format

    return f"# Generated by gsam from {source}; regenerate with `gsam triton build`.\n" + \
        text_format.MessageToString(config)


def config_facts(config, source: str = "config.pbtxt") -> ModelFacts:
    """The model facts stored in a config's parameters."""
    return ModelFacts.from_metadata({k: v.string_value for k, v in config.parameters.items()}, source=source)


def pixels_files() -> dict[str, Path]:
    """gsam.pixels' modules, by their path inside a python model's version folder."""
    import gsam.pixels

    source = Path(gsam.pixels.__file__).parent
    return {f"{PIXELS_PACKAGE}/{path.name}": path for path in sorted(source.glob("*.py"))}


def _write_model(repo: Path, config, version: int, files: dict[str, Path], source: str) -> Path:
    name = config.name
    version_dir = repo / name / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    for target_name, path in files.items():
        target = version_dir / target_name
        if target.exists() and target.resolve() == path.resolve():
            continue  # a checked-in link to our own source
        with atomic_path(target) as tmp:
            shutil.copyfile(path, tmp)
    write_text_atomic(repo / name / "config.pbtxt", config_text(config, source))
    return repo / name


def build_repository(onnx_path: str | Path, repo: str | Path, *, engine: str | Path | None = None, version: int = 1,
                     instances: int = 1, gpu: bool = False, trt_profiles: list[ShapeProfile] | None = None,
                     accelerator_precision: str = "fp32", max_pixels: int | None = None,
                     batching: Batching | None = Batching(), tiling: Tiling = Tiling(), compute_model: str = "auto",
                     cuda_graphs: bool = False, intra_op_threads: int = 0,
                     log: Callable[[str], None] = print) -> list[Path]:
    """Write gsam_python, gsam_image and gsam_onnx, and gsam_trt when an engine or profiles are given.
    Returns the model folders.

    `max_pixels`: the most pixels one request may hold (None: gsam.pixels.bounds' default). gsam_trt's
    config needs only the engine's profiles, so it can be written from `trt_profiles` before the
    engine exists (engines are often built on the GPU host with trtexec); an engine given with
    them must have been built with the same profiles. `compute_model` (COMPUTE_MODELS) is where
    gsam_image sends its pixels. `intra_op_threads`: onnxruntime's threads in each python model instance
    (0: onnxruntime's default, one per core; `gsam tune` searches it).
    """
    onnx_path, repo = Path(onnx_path), Path(repo)
    if version < 1:
        raise GSAMError(f"--model-version must be >= 1; got {version}")
    facts = read_onnx_facts(onnx_path).with_lineage(onnx_file=onnx_path.name, onnx_sha256=sha256_file(onnx_path))
    bounds = RequestBounds.build(max_pixels, tiling.tile, tiling.overlap, tiling.max_tiled_pixels,
                                 input_dtype=facts.input_dtype)
    _check_bounds(facts, bounds)
    external = onnx_path.with_name(onnx_path.name + ".data")
    onnx_files = {"model.onnx": onnx_path, **({external.name: external} if external.exists() else {})}
    trt_profiles = list(trt_profiles or [])
    engine_profiles, engine_files = _engine_inputs(Path(engine) if engine else None, trt_profiles)
    trt_config = None  # made before anything is written or said: a bad set of profiles writes nothing
    if engine_profiles:
        trt_config = tensorrt_config(ENGINE_MODEL, facts, engine_profiles, instances=instances, cuda_graphs=cuda_graphs)
    elif cuda_graphs:
        raise GSAMError("--cuda-graphs applies to gsam_trt: give --engine or --profile")
    if len(trt_profiles) > 1:
        log(f"gsam_onnx: onnxruntime's TensorRT accelerator serves one profile; it gets the first "
            f"({trt_profiles[0].name}); gsam_trt serves all {len(trt_profiles)}")
    compute = choose_compute(compute_model, facts, engine_profiles=engine_profiles, gpu=gpu,
                             python_max_batch=batching.max_batch_size if batching else 0,
                             tile_pixels=bounds.tile ** 2, max_pixels=bounds.max_pixels)
    log(f"gsam_image: computes in {compute.model or 'its own onnxruntime session'}"
        + (f" ({compute.input} {compute.input_dtype}, batches of up to {compute.max_batch})" if compute.model else ""))
    code = {"model.py": PYTHON_MODEL_SOURCE, "compute.py": COMPUTE_SOURCE, **pixels_files()}
    shared = dict(instances=instances, gpu=gpu, bounds=bounds, threads=intra_op_threads)
    configs = [python_config(TENSOR_MODEL, facts, batching=batching, **shared),
               image_config(IMAGE_MODEL, facts, compute=compute, **shared),
               onnx_config(ONNX_MODEL, facts, instances=instances, trt_profiles=trt_profiles[:1],
                           accelerator_precision=accelerator_precision)]
    add_fingerprints(onnx_path, configs + ([trt_config] if trt_config is not None else []), log)
    written = [
        _write_model(repo, configs[0], version, {**onnx_files, **code}, onnx_path.name),
        _write_model(repo, configs[1], version, {**({} if compute.model else onnx_files), **code}, onnx_path.name),
        _write_model(repo, configs[2], version, onnx_files, onnx_path.name),
    ]
    if trt_config is not None:
        log(f"gsam_trt: {engine_batching(engine_profiles).reason}")
        written.append(_write_model(repo, trt_config, version, engine_files, engine.name if engine else onnx_path.name))
        if not engine:
            log(f"gsam_trt: config written for {len(engine_profiles)} profile(s); put an engine built with exactly "
                f"these profiles, in this order, at {repo / ENGINE_MODEL / str(version) / 'model.plan'}")
    return written


def add_fingerprints(onnx_path: Path, configs: list, log: Callable[[str], None]) -> None:
    """Each config's `probe_fingerprint`: the ONNX file's answer to the fixed image of the model's probe size
    (fingerprint.py), what health probes compare a served model's answer with."""
    from google.protobuf import json_format

    from gsam.runtime.serving.fingerprint import PARAMETER, reference
    from gsam.runtime.serving.probe import probe_shape

    made: dict[tuple[int, int], object] = {}
    for config in configs:
        shape = tuple(probe_shape(json_format.MessageToDict(config, preserving_proto_field_name=True))[2:])
        if shape not in made:
            made[shape] = reference(onnx_path, *shape)
        fingerprint = made[shape]
        set_parameters(config, {PARAMETER: fingerprint.to_text()})
        if config.name == IMAGE_MODEL and fingerprint.majority > 0.99:
            log(f"gsam_image: its fingerprint mask is {fingerprint.majority:.0%} one class: a model answering that "
                "class everywhere would pass its health probe")


def _check_bounds(facts: ModelFacts, bounds: RequestBounds) -> None:
    max_pixels, tile, overlap = bounds.max_pixels, bounds.tile, bounds.tile_overlap
    if tile and (tile < facts.min_size or not 0 <= overlap < tile):
        raise GSAMError(f"--oversize-tile {tile} --overlap {overlap}: the tile must be >= the model's "
                        f"minimum side ({facts.min_size}) and the overlap smaller than the tile")
    if tile and tile ** 2 > max_pixels:
        raise GSAMError(f"--oversize-tile {tile}: one tile ({tile ** 2} pixels) is above --max-pixels "
                        f"{max_pixels}")
    if max_pixels < facts.min_size ** 2:
        raise GSAMError(f"--max-pixels {max_pixels} is below one minimum-size image ({facts.min_size}x{facts.min_size})")


def _engine_inputs(engine: Path | None, trt_profiles: list[ShapeProfile]) -> tuple[list[ShapeProfile], dict]:
    """(gsam_trt's profiles, its files): the engine's sidecar profiles (checked against --profile), or the
    --profile flags alone before the engine exists."""
    if engine is None:
        return trt_profiles, {}
    from gsam.export.sidecar import EngineSidecar, sidecar_path

    if not engine.is_file():
        raise GSAMError(f"{engine}: no such engine file")
    engine_profiles = list(EngineSidecar.read(engine).profiles)
    check_engine_profiles(engine, engine_profiles, trt_profiles)
    return engine_profiles, {"model.plan": engine, "model.plan.json": sidecar_path(engine)}
