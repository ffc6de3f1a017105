"""A KServe InferenceService (v1beta1) serving the same repository with KServe's Triton runtime.

KServe's `kserve-tritonserver` ServingRuntime starts tritonserver on /mnt/models (its own ports:
HTTP 8080, gRPC 9000) after its storage initializer has copied `storageUri` there; we add the
model control arguments and the same resources, and pin the Triton release through
runtimeVersion (or the image, when it is not NVIDIA's).
"""

from __future__ import annotations

from .images import TRITON_REGISTRY, check_image
from .manifests import metadata, resources
from .plan import Plan


def inference_service(plan: Plan) -> dict:
    options = plan.options
    model = {
        "modelFormat": {"name": "triton"},
        "runtime": "kserve-tritonserver",
        "protocolVersion": "v2",
        "storageUri": plan.kserve_storage_uri,
        "args": ["--model-control-mode=explicit", *[f"--load-model={m}" for m in plan.models],
                 "--strict-readiness=true"],
        "resources": resources(plan),
    }
    parsed = check_image(plan.image)
    if parsed["repository"] == TRITON_REGISTRY:
        model["runtimeVersion"] = parsed["tag"]
    else:
        model["image"] = plan.image
    predictor = {"minReplicas": options.replicas, "maxReplicas": options.effective_max_replicas, "model": model}
    if options.autoscale == "cpu":
        predictor.update(scaleMetric="cpu", scaleTarget=options.target_cpu_percent)
    else:  # KServe has no queue-time metric; one request in flight per replica is the nearest (no batching)
        predictor.update(scaleMetric="concurrency", scaleTarget=1)
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": metadata(plan, options.name), "spec": {"predictor": predictor}}
