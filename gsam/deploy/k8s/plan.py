"""Turn options and repository facts into concrete deployment decisions, refusing contradictions.

Which models load (default: gsam_trt when the repository has an engine, else gsam_python, as
`gsam serve` does), how many GPUs each replica asks for (follows the loaded models' instance
kinds), which image (the TensorRT match) on which GPUs (an engine runs only on the GPU architecture
it was built on: the pods select nodes of its compute capability), how much memory, and where the
repository comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

from gsam.deploy.container.recipe import base_image, default_image, image_release, parse_image
from gsam.deploy.container.releases import TENSORRT_BY_RELEASE, choose_image
from gsam.errors import GSAMError
from gsam.export.gpu import GpuFacts
from gsam.runtime.memory import PixelCost, known_cost, measured_cost
from gsam.runtime.serving.capacity import ServeLimits
from gsam.runtime.serving.model_config import with_compute_models
from gsam.runtime.triton_names import ENGINE_MODEL, TENSOR_MODEL

from .pod_memory import MemoryBound, ModelLoad, served_memory
from .repository_facts import RepositoryFacts, ServedModel
from .settings import K8sOptions


@dataclass(frozen=True)
class Plan:
    repo: RepositoryFacts
    options: K8sOptions
    models: list[str]
    gpus: int
    image: str
    release: str
    tensorrt_version: str | None  # of the loaded gsam_trt engine, if any
    memory: str
    memory_source: str  # "largest legal requests" or "--memory"
    storage_uri: str | None
    bound: MemoryBound  # what gsam computed (empty when --memory sets the limit)
    loads: tuple[ModelLoad, ...] = ()
    engine_gpu: GpuFacts | None = None  # the GPU the loaded engine was built on (its sidecar)
    serve_limits: ServeLimits = ServeLimits(max_connections=256)  # the pod's `gsam serve` caps (resolved)

    @property
    def node_selector(self) -> dict[str, str]:
        """Nodes whose GPU has the engine's compute capability, by the labels NVIDIA's GPU Feature Discovery
        sets (nvidia.com/gpu.compute.major and .minor); none without an engine that records its GPU."""
        if self.engine_gpu is None:
            return {}
        major, minor = self.engine_gpu.compute_capability.split(".")
        return {"nvidia.com/gpu.compute.major": major, "nvidia.com/gpu.compute.minor": minor}

    @property
    def shm_size(self) -> str:
        """/dev/shm's sizeLimit: the python backend's share of the bound (with --memory: that, as tmpfs pages
        count against the container's limit anyway)."""
        return self.options.memory if self.memory_source == "--memory" else f"{self.bound.mebibytes(self.bound.shm)}Mi"

    @property
    def pvc_name(self) -> str | None:
        """The claim the Deployment mounts: one gsam creates, or the one named by pvc://."""
        if self.storage_uri is None:
            return f"{self.options.name}-models"
        if self.storage_uri.startswith("pvc://"):
            return self.storage_uri[len("pvc://"):].split("/", 1)[0]
        return None

    @property
    def pvc_subpath(self) -> str:
        if self.storage_uri and self.storage_uri.startswith("pvc://"):
            parts = self.storage_uri[len("pvc://"):].split("/", 1)
            return parts[1].strip("/") if len(parts) > 1 else ""
        return ""

    @property
    def kserve_storage_uri(self) -> str:
        return self.storage_uri or f"pvc://{self.pvc_name}/"

    @property
    def base_image(self) -> str:
        """The Triton image the Dockerfile builds FROM."""
        return base_image(self.release)

    @property
    def python_on_gpu(self) -> bool:
        """A loaded python model runs on KIND_GPU: the image gets onnxruntime-gpu."""
        return any(self.repo.models[m].backend == "python" and self.repo.models[m].needs_gpu for m in self.models)

    @property
    def shipped_tensorrt(self) -> str | None:
        return TENSORRT_BY_RELEASE.get(self.release)


def default_models(repo: RepositoryFacts) -> list[str]:
    for name in (ENGINE_MODEL, TENSOR_MODEL):
        if name in repo.models:
            return [name]
    return [sorted(repo.models)[0]]


def model_load(model: ServedModel, gpus: int) -> ModelLoad:
    """A served model's memory inputs, from its config: request bound, tiling, batch, instances, and the
    per-pixel cost of its ONNX file measured in onnxruntime (python-backend models only)."""
    python = model.backend == "python"
    bounds = model.bounds
    max_pixels = bounds.max_pixels
    if max_pixels == 0:
        raise GSAMError(f"{model.name}: its config sets no max_pixels, so no request is bounded and no memory limit "
                        "follows; rebuild with `gsam triton build --max-pixels N`, or pass --memory")
    request_pixels = bounds.request_pixels
    cost = known_cost(model.parameters.get("model_name", ""))
    if python and model.onnx is not None:
        cost = measured_cost(model.onnx)
    instances = model.instances * (max(gpus, 1) if model.needs_gpu else 1)
    return ModelLoad(model.name, model.model_bytes, model.int_parameter("num_classes") or 1, max_pixels,
                     request_pixels, cost if python else PixelCost(0, 0.0), instances,
                     max(1, model.max_batch_size), model.encoded, python)


# A replica sits behind a Service (its clients labelled): fewer open connections than a lone gsam serve takes.
POD_CONNECTIONS = 256


def pod_limits(repo: RepositoryFacts, models: list[str]) -> ServeLimits:
    """The caps the pod's gsam serve runs with: POD_CONNECTIONS, and gsam serve's defaults, the body budget
    resolved for the loaded models' largest legal request (what gsam serve itself would choose)."""
    from gsam.runtime.serving.limits import load_limits

    largest = max(model.body_cap for model in load_limits(repo.path, models).values())
    return ServeLimits(max_connections=POD_CONNECTIONS).resolved(largest)


def memory_bound(repo: RepositoryFacts, models: list[str], gpus: int,
                 limits: ServeLimits) -> tuple[MemoryBound, tuple[ModelLoad, ...]]:
    """The pod's memory bound (pod_memory.py's served_memory) for the loaded models under gsam serve's caps."""
    loads = tuple(model_load(repo.models[m], gpus) for m in models)
    return served_memory(list(loads), limits), loads


def pick_image(image: str | None, tensorrt_version: str | None) -> tuple[str, str]:
    """(the image the pods run, the Triton release it is built FROM). A tag states the release, which must
    ship the engine's TensorRT; a digest alone, or no --container-image, means the Dockerfile's release."""
    ref = parse_image(image) if image else None
    if ref is not None and ref.release is not None:
        choose_image(f"{ref.repository}:{ref.tag}", tensorrt_version)
    release = image_release(ref, tensorrt_version)
    return image or default_image(release), release


def make_plan(repo: RepositoryFacts, options: K8sOptions) -> Plan:
    # a gsam_image that computes through another model (BLS) needs that model loaded in the same pod
    models = with_compute_models(repo.path, options.models or default_models(repo))
    unknown = [m for m in models if m not in repo.models]
    if unknown:
        raise GSAMError(f"--triton-model {','.join(unknown)}: not in {repo.path} (it has {', '.join(sorted(repo.models))})")
    gpu_models = [m for m in models if repo.models[m].needs_gpu]
    gpus = options.gpus_per_replica if options.gpus_per_replica is not None else (1 if gpu_models else 0)
    if gpus > 0 and not gpu_models:
        raise GSAMError(f"--gpus-per-replica {gpus}: the loaded models ({', '.join(models)}) run on KIND_CPU only; "
                        "load a GPU model (--triton-model gsam_onnx or gsam_trt), rebuild with `gsam triton build --gpu`, "
                        "or use --gpus-per-replica 0")
    if gpus == 0 and gpu_models:
        raise GSAMError(f"--gpus-per-replica 0: {', '.join(gpu_models)} run on KIND_GPU; give at least 1 GPU or "
                        "load CPU models only (--triton-model gsam_python)")
    trt_versions = {repo.models[m].tensorrt_version for m in models if repo.models[m].backend == "tensorrt_plan"}
    if None in trt_versions and options.image is None:
        raise GSAMError(f"{repo.path}/gsam_trt: no model.plan.json sidecar states the engine's TensorRT version; "
                        "rebuild with `gsam triton build --engine` or pass --container-image")
    trt_versions.discard(None)
    if len(trt_versions) > 1:
        raise GSAMError(f"the loaded engines were built with different TensorRT versions: {sorted(trt_versions)}")
    tensorrt_version = next(iter(trt_versions), None)
    engine_gpu = engine_gpu_of(repo, models)
    image, release = pick_image(options.image, tensorrt_version)
    limits = pod_limits(repo, models)
    if options.memory:
        bound, loads = MemoryBound(0, 0, {}), ()
        memory, source = options.memory, "--memory"
    else:
        bound, loads = memory_bound(repo, models, gpus, limits)
        memory, source = f"{bound.mebibytes()}Mi", "largest legal requests"
    return Plan(repo, options, models, gpus, image, release, tensorrt_version, memory, source, options.storage_uri,
                bound, loads, engine_gpu, limits)


def engine_gpu_of(repo: RepositoryFacts, models: list[str]) -> GpuFacts | None:
    """The GPU the loaded engines were built on; GSAMError when two were built for different architectures
    (no node runs both)."""
    gpus = {repo.models[m].gpu for m in models if repo.models[m].gpu is not None}
    if len({g.compute_capability for g in gpus}) > 1:
        raise GSAMError("the loaded engines were built on GPUs of different architectures ("
                        + ", ".join(sorted(g.describe() for g in gpus)) + "); rebuild them on one kind of GPU")
    return min(gpus, key=lambda g: g.name, default=None)
