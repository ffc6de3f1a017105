"""Plain Kubernetes objects for gsam serve on a gsam repository: Deployment, Service, HPA, PVC and the
NetworkPolicy that admits clients.

Built as dictionaries from a Plan, so every name, port and path comes from the repository and
the options; validated against the Kubernetes JSON schemas (validate.py) before writing. The pod
itself (container, probes, security contexts, volumes) is pod.py's.
"""

from __future__ import annotations

import math

from .plan import Plan
from .pod import GRPC_PORT, HTTP_PORT, METRICS_PORT, pod_spec

# Schema version the manifests are written for and validated against (stated in an annotation).
KUBERNETES_VERSION = "1.33.0"
# Custom-metrics name of Triton's cumulative queue time, as a per-second rate per pod; the
# prometheus-adapter rule in prometheus_adapter_values() publishes it.
QUEUE_METRIC = "nv_inference_queue_duration_us_per_second"


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
    if plan.engine_gpu:
        values["gsam.io/engine-compute-capability"] = plan.engine_gpu.compute_capability
    return values


def annotations(plan: Plan) -> dict[str, str]:
    return {"gsam.io/kubernetes-schema": KUBERNETES_VERSION, "gsam.io/models": ",".join(plan.models),
            "gsam.io/image": plan.image, "gsam.io/base-image": plan.base_image,
            "gsam.io/memory-from": plan.memory_source}


def metadata(plan: Plan, name: str) -> dict:
    meta = {"name": name, "labels": labels(plan), "annotations": annotations(plan)}
    if plan.options.namespace:
        meta["namespace"] = plan.options.namespace
    return meta


def deployment(plan: Plan) -> dict:
    pod_annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT),
                       "prometheus.io/path": "/metrics"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(plan, plan.options.name),
        "spec": {
            "replicas": plan.options.replicas,
            "selector": {"matchLabels": selector_labels(plan)},
            "template": {"metadata": {"labels": labels(plan), "annotations": pod_annotations},
                         "spec": pod_spec(plan)},
        },
    }


def network_policy(plan: Plan) -> dict:
    """Ingress to the pods: HTTP and gRPC from pods labelled as clients (in the same namespace), metrics
    from the monitoring namespace; nothing else (exec probes need no network)."""
    options = plan.options
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": options.monitoring_namespace}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(plan, options.name),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(plan)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": options.client_selector}}],
                 "ports": [{"protocol": "TCP", "port": HTTP_PORT}, {"protocol": "TCP", "port": GRPC_PORT}]},
                {"from": [monitoring], "ports": [{"protocol": "TCP", "port": METRICS_PORT}]},
            ],
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
               "networkpolicy.yaml": network_policy(plan), "hpa.yaml": autoscaler(plan)}
    return {name: obj for name, obj in objects.items() if obj is not None}
