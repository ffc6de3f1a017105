"""Kubernetes and KServe manifests for a gsam Triton model repository, validated offline.

    from gsam.deploy.k8s import K8sOptions, write_manifests
    result = write_manifests("triton_models", "deploy", K8sOptions(replicas=2))

options.py (choices and their checks), repository.py (facts read from the repository),
images.py (Triton release <-> TensorRT), plan.py (decisions), manifests.py (Deployment,
Service, HPA, PVC), kserve.py (InferenceService), validate.py (schemas, KServe SDK),
writer.py (validate, then write atomically).
"""

from .settings import K8sOptions
from .writer import K8sResult, write_manifests

__all__ = ["K8sOptions", "K8sResult", "write_manifests"]
