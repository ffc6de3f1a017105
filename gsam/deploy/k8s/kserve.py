"""A KServe InferenceService (v1beta1) serving the same repository with KServe's Triton runtime.

KServe's `kserve-tritonserver` ServingRuntime starts tritonserver on /mnt/models (its own ports:
HTTP 8080, gRPC 9000) after its storage initializer has copied `storageUri` there. KServe owns
the command, the ports and the health checks, so `gsam serve` (gateway, supervisor, `gsam
health`) is not in this path; what gsam can set, it sets: the image built from DIR/image (gsam's
pinned dependencies, no pip at start), explicit model control with the models chosen here, the
model-repository, model-config, shared-memory, trace and logging APIs restricted to a header key
nobody is given (a random one per generation: the APIs are off), the same resources, a non-root
read-only container with /tmp and /dev/shm writable. No NetworkPolicy is written for KServe: its
traffic arrives through the cluster's ingress gateway and Knative's activator, whose labels
differ between installations.
"""

from __future__ import annotations

import secrets

from .manifests import metadata
from .plan import Plan
from .pod import (
    TERMINATION_GRACE_S,
    container_security_context,
    pod_security_context,
    resources,
    scratch_mounts,
    scratch_volumes,
)

# Triton's restricted-API categories that change or reveal the server (src/restricted_features.h) and the
# flags that restrict them; the separator before the key is ':' (the --help text of some releases says ',').
RESTRICTED_APIS = ("model-repository", "model-config", "shared-memory", "trace", "logging")
RESTRICT_FLAGS = ("--http-restricted-api", "--grpc-restricted-protocol")
ADMIN_HEADER = "gsam-admin"


def restricted_api_args(key: str | None = None) -> list[str]:
    key = key or secrets.token_urlsafe(24)
    return [f"{flag}={','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={key}" for flag in RESTRICT_FLAGS]


def inference_service(plan: Plan) -> dict:
    options = plan.options
    model = {
        "modelFormat": {"name": "triton"},
        "runtime": "kserve-tritonserver",
        "protocolVersion": "v2",
        "storageUri": plan.kserve_storage_uri,
        "image": plan.image,
        "args": ["--model-control-mode=explicit", *[f"--load-model={m}" for m in plan.models],
                 "--strict-readiness=true", *restricted_api_args()],
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "resources": resources(plan, ephemeral=False),
        "securityContext": container_security_context(),
        "volumeMounts": scratch_mounts(),
    }
    predictor = {"minReplicas": options.replicas, "maxReplicas": options.effective_max_replicas,
                 "securityContext": pod_security_context(), "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
                 "volumes": scratch_volumes(plan), "model": model}
    if plan.node_selector:  # the engine's GPU architecture
        predictor["nodeSelector"] = plan.node_selector
    if options.autoscale == "cpu":
        predictor.update(scaleMetric="cpu", scaleTarget=options.target_cpu_percent)
    else:  # KServe has no queue-time metric; one request in flight per replica is the nearest (no batching)
        predictor.update(scaleMetric="concurrency", scaleTarget=1)
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": metadata(plan, options.name), "spec": {"predictor": predictor}}
