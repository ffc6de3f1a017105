"""Plain Kubernetes objects for a Triton server on a gsam repository: Deployment, Service, HPA, PVC.

Built as dictionaries from a Plan, so every name, port and path comes from the repository and
the options; validated against the Kubernetes JSON schemas (validate.py) before writing.
"""

from __future__ import annotations

import math
import shlex

from .images import TRITON_REGISTRY
from .plan import Plan

# Triton's own defaults, which `gsam serve` also uses for HTTP and gRPC.
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
MODEL_MOUNT = "/models"
# Schema version the manifests are written for and validated against (stated in an annotation).
KUBERNETES_VERSION = "1.33.0"
# Custom-metrics name of Triton's cumulative queue time, as a per-second rate per pod; the
# prometheus-adapter rule in prometheus_adapter_values() publishes it.
QUEUE_METRIC = "nv_inference_queue_duration_us_per_second"
ONNXRUNTIME_REQUIREMENT = {"KIND_CPU": "onnxruntime>=1.18", "KIND_GPU": "onnxruntime-gpu>=1.18"}


def selector_labels(plan: Plan) -> dict[str, str]:
    return {"app.kubernetes.io/name": plan.options.name, "app.kubernetes.io/component": "triton"}


def labels(plan: Plan) -> dict[str, str]:
    """Selector labels plus what the image was chosen for: the Triton release and its TensorRT."""
    values = {**selector_labels(plan), "app.kubernetes.io/managed-by": "gsam",
              "gsam.io/triton-release": plan.release, **plan.options.labels}
    if plan.shipped_tensorrt:
        values["gsam.io/image-tensorrt"] = plan.shipped_tensorrt
    if plan.tensorrt_version:
        values["gsam.io/engine-tensorrt"] = plan.tensorrt_version
    return values


def annotations(plan: Plan) -> dict[str, str]:
    return {"gsam.io/kubernetes-schema": KUBERNETES_VERSION, "gsam.io/models": ",".join(plan.models),
            "gsam.io/image": plan.image, "gsam.io/memory-from": plan.memory_source}


def metadata(plan: Plan, name: str) -> dict:
    meta = {"name": name, "labels": labels(plan), "annotations": annotations(plan)}
    if plan.options.namespace:
        meta["namespace"] = plan.options.namespace
    return meta


def model_repository_arg(plan: Plan) -> str:
    """Where tritonserver reads the repository: the mounted claim, or the cloud URI directly."""
    return MODEL_MOUNT if plan.pvc_name else plan.storage_uri


def tritonserver_args(plan: Plan) -> list[str]:
    return ["tritonserver", f"--model-repository={model_repository_arg(plan)}", "--model-control-mode=explicit",
            *[f"--load-model={m}" for m in plan.models], "--strict-readiness=true",
            f"--http-port={HTTP_PORT}", f"--grpc-port={GRPC_PORT}", f"--metrics-port={METRICS_PORT}",
            "--allow-metrics=true", "--log-verbose=0"]


def container_command(plan: Plan) -> list[str]:
    """The stock Triton image has no onnxruntime in its Python: install it before gsam_python loads."""
    args = tritonserver_args(plan)
    if plan.needs_onnxruntime and plan.image.startswith(TRITON_REGISTRY + ":"):
        kinds = {k for m in plan.models if plan.repo.models[m].backend == "python" for k in plan.repo.models[m].kinds}
        package = ONNXRUNTIME_REQUIREMENT["KIND_GPU" if "KIND_GPU" in kinds else "KIND_CPU"]
        return ["/bin/sh", "-c", f"python3 -m pip install --no-cache-dir {shlex.quote(package)} && exec {shlex.join(args)}"]
    return args


def resources(plan: Plan) -> dict:
    requests = {"cpu": plan.options.cpu, "memory": plan.memory}
    limits = {"memory": plan.memory}
    if plan.gpus:
        requests["nvidia.com/gpu"] = str(plan.gpus)
        limits["nvidia.com/gpu"] = str(plan.gpus)
    return {"requests": requests, "limits": limits}


def _probe(path: str, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 5,
            "failureThreshold": failures}


def deployment(plan: Plan) -> dict:
    container = {
        "name": "tritonserver",
        "image": plan.image,
        "command": container_command(plan),
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                  {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "readinessProbe": _probe("/v2/health/ready", 5, 3),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        # Installing onnxruntime and loading the models may take minutes; liveness waits for this.
        "startupProbe": _probe("/v2/health/live", 10, 60),
        "resources": resources(plan),
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    # The python backend exchanges tensors through /dev/shm, which is 64 MiB in a pod by default.
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]
    if plan.pvc_name:
        mount = {"name": "model-repository", "mountPath": MODEL_MOUNT, "readOnly": True}
        if plan.pvc_subpath:
            mount["subPath"] = plan.pvc_subpath
        container["volumeMounts"].append(mount)
        volumes.append({"name": "model-repository",
                        "persistentVolumeClaim": {"claimName": plan.pvc_name, "readOnly": True}})
    else:  # s3://, gs://, as://: Triton reads the bucket; credentials come from an optional Secret
        container["envFrom"] = [{"secretRef": {"name": f"{plan.options.name}-storage", "optional": True}}]
    pod_annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT),
                       "prometheus.io/path": "/metrics"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(plan, plan.options.name),
        "spec": {
            "replicas": plan.options.replicas,
            "selector": {"matchLabels": selector_labels(plan)},
            "template": {
                "metadata": {"labels": labels(plan), "annotations": pod_annotations},
                "spec": {"containers": [container], "volumes": volumes, "terminationGracePeriodSeconds": 30},
            },
        },
    }


def service(plan: Plan) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(plan, plan.options.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(plan),
            "ports": [{"name": name, "port": port, "targetPort": name, "protocol": "TCP"}
                      for name, port in (("http", HTTP_PORT), ("grpc", GRPC_PORT), ("metrics", METRICS_PORT))],
        },
    }


def autoscaler(plan: Plan) -> dict:
    options = plan.options
    if options.autoscale == "cpu":
        metric = {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": options.target_cpu_percent}}}
    else:
        metric = {"type": "Pods", "pods": {"metric": {"name": QUEUE_METRIC}, "target": {
            "type": "AverageValue", "averageValue": str(options.target_queue_us_per_s)}}}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(plan, options.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": options.name},
            "minReplicas": options.replicas,
            "maxReplicas": options.effective_max_replicas,
            "metrics": [metric],
        },
    }


def volume_claim(plan: Plan) -> dict | None:
    """A claim gsam creates when no --storage-uri is given; the repository is copied into it."""
    if plan.storage_uri is not None:
        return None
    size_gib = max(1, math.ceil(2 * plan.repo.total_bytes / 2**30))
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(plan, plan.pvc_name),
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": f"{size_gib}Gi"}}},
    }


def prometheus_adapter_values(plan: Plan) -> dict:
    """prometheus-adapter Helm values publishing QUEUE_METRIC per pod through the custom-metrics API."""
    return {"rules": {"custom": [{
        "seriesQuery": 'nv_inference_queue_duration_us{namespace!="",pod!=""}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": "^nv_inference_queue_duration_us$", "as": QUEUE_METRIC},
        "metricsQuery": "sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)",
    }]}}


def kubernetes_objects(plan: Plan) -> dict[str, dict]:
    """File name -> object, in the order kubectl should create them."""
    objects = {"pvc.yaml": volume_claim(plan), "deployment.yaml": deployment(plan), "service.yaml": service(plan),
               "hpa.yaml": autoscaler(plan)}
    return {name: obj for name, obj in objects.items() if obj is not None}
