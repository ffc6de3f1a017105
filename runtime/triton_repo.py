"""Write a Triton model repository from a gsam ONNX file (and optionally a TensorRT engine).

Configs are generated from the model's own metadata, so input/output names and dims
always match the model, and every config is parsed with Triton's protobuf schema
(tritonclient.grpc.model_config_pb2) before it is saved.

Dynamic batching stays off: requests of different image sizes cannot be concatenated
into one batch without Triton's ragged batching, which the model does not take.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import GSAMError
from ..export.metadata import read_metadata
from ..export.profiles import ShapeProfile
from ..io import atomic_path, write_text_atomic

PYTHON_MODEL_SOURCE = Path(__file__).with_name("triton_python_model.py")
WARMUP_SHAPE = (1, 3, 64, 96)


def _io_block(num_classes: int) -> str:
    return (
        'input [\n  { name: "image" data_type: TYPE_FP32 dims: [ -1, 3, -1, -1 ] }\n]\n'
        f'output [\n  {{ name: "logits" data_type: TYPE_FP32 dims: [ -1, {num_classes}, -1, -1 ] }},\n'
        '  { name: "mask" data_type: TYPE_INT32 dims: [ -1, -1, -1 ] }\n]\n'
    )


def _parameters(metadata: dict[str, str], extra: dict[str, str] | None = None) -> str:
    keys = ("num_classes", "class_names", "min_size", "token_stride", "palette", "gsam_version")
    values = {k: metadata[k] for k in keys if k in metadata} | (extra or {})
    return "".join(f"parameters: {{ key: {json.dumps(k)} value: {{ string_value: {json.dumps(v)} }} }}\n"
                   for k, v in values.items())


def _warmup(min_size: int) -> str:
    shape = (1, 3, max(min_size, WARMUP_SHAPE[2]), max(min_size, WARMUP_SHAPE[3]))
    dims = ", ".join(map(str, shape))
    return ('model_warmup [\n  { name: "warmup" batch_size: 1 inputs { key: "image" value: '
            f'{{ data_type: TYPE_FP32 dims: [ {dims} ] random_data: true }} }} }}\n]\n')


def _profile_strings(profiles: list[ShapeProfile]) -> dict[str, str]:
    join = lambda shapes: ",".join("image:" + "x".join(map(str, s)) for s in shapes)  # noqa: E731
    return {"trt_profile_min_shapes": join(p.min for p in profiles),
            "trt_profile_opt_shapes": join(p.opt for p in profiles),
            "trt_profile_max_shapes": join(p.max for p in profiles)}


def python_config(name: str, metadata: dict[str, str], instances: int = 1, gpu: bool = False) -> str:
    return (f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n' + _io_block(int(metadata["num_classes"]))
            + f'instance_group [ {{ count: {instances} kind: {"KIND_GPU" if gpu else "KIND_CPU"} }} ]\n'
            + _parameters(metadata, {"intra_op_threads": "0"}) + _warmup(int(metadata["min_size"])))


def onnx_config(name: str, metadata: dict[str, str], instances: int = 1, gpu: bool = True,
                trt_profiles: list[ShapeProfile] | None = None, fp16: bool = False) -> str:
    text = (f'name: "{name}"\nbackend: "onnxruntime"\ndefault_model_filename: "model.onnx"\nmax_batch_size: 0\n'
            + _io_block(int(metadata["num_classes"]))
            + f'instance_group [ {{ count: {instances} kind: {"KIND_GPU" if gpu else "KIND_CPU"} }} ]\n')
    if trt_profiles:
        params = {"precision_mode": "FP16" if fp16 else "FP32", "trt_engine_cache_enable": "true",
                  "trt_engine_cache_path": "/tmp/gsam_trt_cache", **_profile_strings(trt_profiles)}
        body = " ".join(f"parameters {{ key: {json.dumps(k)} value: {json.dumps(v)} }}" for k, v in params.items())
        text += ('optimization { execution_accelerators { gpu_execution_accelerator: [ '
                 f'{{ name: "tensorrt" {body} }} ] }} }}\n')
    return text + _parameters(metadata) + _warmup(int(metadata["min_size"]))


def tensorrt_config(name: str, metadata: dict[str, str], profiles: list[ShapeProfile], instances: int = 1) -> str:
    """One instance group per optimization profile, so each instance keeps its profile."""
    groups = ",\n".join(f'  {{ count: {instances} kind: KIND_GPU profile: [ "{i}" ] }}' for i in range(len(profiles)))
    return (f'name: "{name}"\nplatform: "tensorrt_plan"\ndefault_model_filename: "model.plan"\nmax_batch_size: 0\n'
            + _io_block(int(metadata["num_classes"])) + f"instance_group [\n{groups}\n]\n" + _parameters(metadata))


def parse_config(text: str):
    """Parse with Triton's own schema; raises GSAMError naming the problem."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise GSAMError(f"generated Triton config does not parse: {exc}") from None


def _write_model(repo: Path, name: str, config: str, version: int, files: dict[str, Path]) -> Path:
    parse_config(config)
    version_dir = repo / name / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    for target_name, source in files.items():
        target = version_dir / target_name
        if target.exists() and target.resolve() == source.resolve():
            continue  # the checked-in symlink to our own source
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    write_text_atomic(repo / name / "config.pbtxt", config)
    return repo / name


def build_repository(onnx_path: str | Path, repo: str | Path, engine: str | Path | None = None, version: int = 1,
                     instances: int = 1, gpu: bool = False, trt_profiles: list[ShapeProfile] | None = None,
                     fp16: bool = False) -> list[Path]:
    """Write gsam_python and gsam_onnx (and gsam_trt with an engine). Returns the model folders."""
    onnx_path, repo = Path(onnx_path), Path(repo)
    metadata = read_metadata(onnx_path)
    if version < 1:
        raise GSAMError(f"--version must be >= 1; got {version}")
    external = onnx_path.with_name(onnx_path.name + ".data")
    onnx_files = {"model.onnx": onnx_path, **({external.name: external} if external.exists() else {})}
    written = [
        _write_model(repo, "gsam_python", python_config("gsam_python", metadata, instances, gpu), version,
                     {**onnx_files, "model.py": PYTHON_MODEL_SOURCE}),
        _write_model(repo, "gsam_onnx", onnx_config("gsam_onnx", metadata, instances, True, trt_profiles, fp16),
                     version, onnx_files),
    ]
    if engine:
        from ..export.tensorrt import sidecar_path

        engine = Path(engine)
        side = sidecar_path(engine)
        if not engine.is_file() or not side.is_file():
            raise GSAMError(f"{engine}: engine or its sidecar {side.name} is missing")
        profiles = [ShapeProfile.from_dict(p) for p in json.loads(side.read_text())["profiles"]]
        written.append(_write_model(repo, "gsam_trt", tensorrt_config("gsam_trt", metadata, profiles, instances),
                                    version, {"model.plan": engine}))
    return written


def model_is_servable_here(repo: Path, name: str) -> bool:
    """The pip-installed server only has the python backend."""
    config = repo / name / "config.pbtxt"
    return config.is_file() and 'backend: "python"' in config.read_text()



