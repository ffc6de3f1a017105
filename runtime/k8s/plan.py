"""Turn options and repository facts into concrete deployment decisions, refusing contradictions.

Which models load (default: gsam_trt when the repository has an engine, else gsam_python, as
`gsam serve` does), how many GPUs each replica asks for (follows the loaded models' instance
kinds), which image (the TensorRT match), how much memory, and where the repository comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gsam.errors import GSAMError

from .images import TENSORRT_BY_RELEASE, choose_image
from .options import K8sOptions
from .repository import RepositoryFacts

# Fitted to benchmarks/k8s_memory.py runs (bundled Triton, gsam_python, one request at a time; figures in
# docs/kubernetes.md): the server's peak resident memory while serving a 1024x1024 image was
# 512.5 MiB for tiny (12.6 MiB ONNX) and 2061.7 MiB for vit_b (536.8 MiB ONNX), i.e.
# SERVER_BASE_MIB + ONNX_MULTIPLIER x the model size. HEADROOM covers allocator slack and a second request.
SERVER_BASE_MIB = 475
ONNX_MULTIPLIER = 2.96
HEADROOM = 1.25


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
    memory_source: str  # "measured footprint" or "--memory"
    storage_uri: str | None

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
    def needs_onnxruntime(self) -> bool:
        """gsam_python imports onnxruntime, which the stock Triton image's Python lacks."""
        return any(self.repo.models[m].backend == "python" for m in self.models)

    @property
    def shipped_tensorrt(self) -> str | None:
        return TENSORRT_BY_RELEASE.get(self.release)


def default_models(repo: RepositoryFacts) -> list[str]:
    for name in ("gsam_trt", "gsam_python"):
        if name in repo.models:
            return [name]
    return [sorted(repo.models)[0]]


def estimate_memory_mib(repo: RepositoryFacts, models: list[str]) -> int:
    model_mib = sum(repo.models[m].model_bytes for m in models) / 2**20
    return int(math.ceil((SERVER_BASE_MIB + ONNX_MULTIPLIER * model_mib) * HEADROOM / 64) * 64)


def make_plan(repo: RepositoryFacts, options: K8sOptions) -> Plan:
    models = options.models or default_models(repo)
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
                        "rebuild with `gsam triton build --engine` or pass --image")
    trt_versions.discard(None)
    if len(trt_versions) > 1:
        raise GSAMError(f"the loaded engines were built with different TensorRT versions: {sorted(trt_versions)}")
    tensorrt_version = next(iter(trt_versions), None)
    image, release = choose_image(options.image, tensorrt_version)
    if options.memory:
        memory, source = options.memory, "--memory"
    else:
        memory, source = f"{estimate_memory_mib(repo, models)}Mi", "measured footprint"
    return Plan(repo, options, models, gpus, image, release, tensorrt_version, memory, source, options.storage_uri)
