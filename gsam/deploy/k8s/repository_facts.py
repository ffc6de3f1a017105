"""Read what a deployment needs from a model repository written by `gsam triton build`.

The repository is the one source of truth: model names, backends, instance kinds (CPU or GPU),
the newest version folder, the ONNX size, and the TensorRT version of a gsam_trt engine all
come from its files. Each config.pbtxt is parsed with Triton's own protobuf schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gsam.errors import GSAMError
from gsam.export.gpu import GpuFacts
from gsam.export.sidecar import EngineSidecar, sidecar_path
from gsam.pixels.bounds import RequestBounds
from gsam.runtime.serving.model_config import parse_config, request_bounds


@dataclass(frozen=True)
class ServedModel:
    name: str
    backend: str  # python, onnxruntime or tensorrt_plan (config's backend or platform)
    kinds: frozenset[str]  # instance group kinds: KIND_CPU, KIND_GPU
    version: int  # newest version folder
    model_bytes: int  # model.onnx (+ external data) or model.plan
    tensorrt_version: str | None  # from the engine's sidecar, for tensorrt_plan models
    parameters: dict[str, str] = field(default_factory=dict)  # the config's string parameters
    instances: int = 1
    max_batch_size: int = 0
    encoded: bool = False  # takes encoded image bytes (gsam_image)
    onnx: Path | None = None  # the version folder's model.onnx, if any
    bounds: RequestBounds = RequestBounds(0)  # what one request may hold (gsam.pixels.bounds)
    gpu: GpuFacts | None = None  # the GPU the engine was built on, from its sidecar (gsam_trt)

    @property
    def needs_gpu(self) -> bool:
        return "KIND_GPU" in self.kinds

    def int_parameter(self, key: str) -> int:
        try:
            return int(self.parameters.get(key) or 0)
        except ValueError:
            raise GSAMError(f"{self.name}/config.pbtxt: parameter {key!r} must be an integer; got "
                            f"{self.parameters[key]!r}") from None


@dataclass(frozen=True)
class RepositoryFacts:
    path: Path
    models: dict[str, ServedModel]

    @property
    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    @property
    def symlinks(self) -> list[Path]:
        """Links (the checked-in triton_models/ links model.py to the source tree): copy with links followed."""
        return sorted(p for p in self.path.rglob("*") if p.is_symlink())


def _kind_name(kind: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.ModelInstanceGroup.Kind.Name(kind)


def _engine_gpu(version_dir: Path) -> GpuFacts | None:
    if not sidecar_path(version_dir / "model.plan").is_file():
        return None
    return EngineSidecar.read(version_dir / "model.plan").gpu


def _tensorrt_version(config, version_dir: Path) -> str | None:
    """The engine sidecar beside model.plan (written by gsam export tensorrt), else a config parameter."""
    if sidecar_path(version_dir / "model.plan").is_file():
        return EngineSidecar.read(version_dir / "model.plan").tensorrt_version
    if "tensorrt_version" in config.parameters:
        return config.parameters["tensorrt_version"].string_value
    return None


def read_model(folder: Path) -> ServedModel:
    config_path = folder / "config.pbtxt"
    try:
        config = parse_config(config_path.read_text())
    except GSAMError as exc:
        raise GSAMError(f"{config_path}: {exc}") from None
    name = config.name or folder.name
    if name != folder.name:
        raise GSAMError(f"{config_path}: name {name!r} differs from its folder {folder.name!r}")
    versions = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        raise GSAMError(f"{folder}: no version folder (1/, 2/, ...); rebuild with `gsam triton build`")
    version_dir = folder / str(versions[-1])
    backend = config.backend or config.platform
    # gsam_image computing in another model through BLS holds model.py alone; the others hold their model file
    bls = "compute_model" in config.parameters and config.parameters["compute_model"].string_value
    filename = config.default_model_filename or ("model.plan" if backend == "tensorrt_plan" else
                                                 "model.py" if bls else "model.onnx")
    model_files = [p for p in version_dir.glob("model.onnx*" if filename == "model.py" else filename + "*")
                   if p.is_file() and not p.name.endswith(".json")]
    if not (version_dir / filename).is_file():
        raise GSAMError(f"{version_dir}: {filename} is missing; rebuild with `gsam triton build`")
    kinds = frozenset(_kind_name(group.kind) for group in config.instance_group) or frozenset({"KIND_GPU"})
    trt = _tensorrt_version(config, version_dir) if backend == "tensorrt_plan" else None
    onnx = version_dir / "model.onnx"
    return ServedModel(name, backend, kinds, versions[-1], sum(p.stat().st_size for p in model_files), trt,
                       parameters={k: v.string_value for k, v in config.parameters.items()},
                       instances=sum(group.count or 1 for group in config.instance_group) or 1,
                       max_batch_size=config.max_batch_size, encoded=any(i.name == "image_bytes" for i in config.input),
                       onnx=onnx if onnx.is_file() else None,
                       bounds=request_bounds(config, folder),
                       gpu=_engine_gpu(version_dir) if backend == "tensorrt_plan" else None)


def read_repository(repo: str | Path) -> RepositoryFacts:
    path = Path(repo)
    if not path.is_dir():
        raise GSAMError(f"{path}: no such model repository; write one with `gsam triton build`")
    models = {folder.name: read_model(folder) for folder in sorted(path.iterdir())
              if (folder / "config.pbtxt").is_file()}
    if not models:
        raise GSAMError(f"{path}: no model with a config.pbtxt; write one with `gsam triton build`")
    return RepositoryFacts(path.resolve(), models)
