"""The locked-down pod: the `gsam serve` container, its probes, volumes and security contexts.

The container runs as NVIDIA's non-root user (uid/gid 1000) with a read-only root filesystem, no
privilege escalation, every capability dropped and the RuntimeDefault seccomp profile. Writable
are only /tmp (logs, Python's temporary files) and /dev/shm (the python backend's tensors, memory
backed and sized from the memory bound). The probes run `gsam health`, a real minimal inference
of each loaded model, inside the container (the NetworkPolicy does not apply to exec probes).
"""

from __future__ import annotations

import shlex

from gsam.deploy.container.recipe import IMAGE_USER

from .plan import Plan

HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
MODEL_MOUNT = "/models"
TMP_SIZE = "1Gi"
TERMINATION_GRACE_S = 30  # gsam serve drains and exits within 20 s of SIGTERM
# Copies an s3://, gs:// or as:// repository into the pod before gsam serve starts (gsam serve reads a folder).
FETCH_IMAGE = "docker.io/rclone/rclone:1.69.1"


def pod_security_context() -> dict:
    return {"runAsNonRoot": True, "runAsUser": IMAGE_USER, "runAsGroup": IMAGE_USER, "fsGroup": IMAGE_USER,
            "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def service_hosts(plan: Plan) -> list[str]:
    """The names clients use for the Service, accepted in the Host header (--allow-host; patterns for the
    namespace when the manifests do not name one: only cluster-internal names end in .svc)."""
    name, namespace = plan.options.name, plan.options.namespace or "*"
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]


def serve_command(plan: Plan) -> list[str]:
    """`gsam serve` on the mounted repository, public ports on every interface of the pod, with the caps the
    memory limit was computed from and the Service's names as the hosts it answers to."""
    return ["gsam", "serve", "--repo", MODEL_MOUNT, "--host", "0.0.0.0", "--http-port", str(HTTP_PORT),
            "--grpc-port", str(GRPC_PORT), "--metrics-port", str(METRICS_PORT), *plan.serve_limits.flags(),
            "--allow-host", ",".join(service_hosts(plan)), "--triton-models", ",".join(plan.models)]


def health_command(plan: Plan, port: int = HTTP_PORT) -> list[str]:
    """`gsam health` of every loaded model: one real minimal inference each, its answer compared with the
    fingerprint in the mounted repository."""
    checks = [["gsam", "health", f"http://127.0.0.1:{port}", "--triton-model", model, "--repo", MODEL_MOUNT]
              for model in plan.models]
    if len(checks) == 1:
        return checks[0]
    return ["/bin/sh", "-c", " && ".join(shlex.join(check) for check in checks)]


def probe(plan: Plan, period: int, failures: int) -> dict:
    return {"exec": {"command": health_command(plan)}, "periodSeconds": period, "timeoutSeconds": 10,
            "failureThreshold": failures}


def ephemeral_bytes(plan: Plan) -> int:
    """/tmp, plus the repository's copy when it is fetched from a bucket."""
    return (1 << 30) + (fetched_repository_bytes(plan) if plan.pvc_name is None else 0)


def fetched_repository_bytes(plan: Plan) -> int:
    return max(1 << 30, 2 * plan.repo.total_bytes)


def resources(plan: Plan, ephemeral: bool = True) -> dict:
    """Requests = limits: CPU, memory (the bound), ephemeral storage, GPUs."""
    values = {"cpu": plan.options.cpu, "memory": plan.memory}
    if ephemeral:
        values["ephemeral-storage"] = f"{-(-ephemeral_bytes(plan) // 2**20)}Mi"
    if plan.gpus:
        values["nvidia.com/gpu"] = str(plan.gpus)
    return {"requests": dict(values), "limits": dict(values)}


def scratch_volumes(plan: Plan) -> list[dict]:
    # The python backend passes tensors through /dev/shm (64 MiB in a pod by default); its pages count
    # against the container's memory limit, which the bound already includes.
    return [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": plan.shm_size}},
            {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}}]


def scratch_mounts() -> list[dict]:
    return [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}]


def _fetch_source(uri: str) -> tuple[str, dict[str, str]]:
    """rclone's on-the-fly remote for a Triton cloud URI, and its environment (credentials: the Secret)."""
    scheme, rest = uri.split("://", 1)
    if scheme == "s3":
        return f":s3:{rest}", {"RCLONE_S3_PROVIDER": "AWS", "RCLONE_S3_ENV_AUTH": "true"}
    if scheme == "gs":
        return f":gcs:{rest}", {"RCLONE_GCS_ENV_AUTH": "true"}
    account, _, path = rest.partition("/")
    return f":azureblob:{path}", {"RCLONE_AZUREBLOB_ACCOUNT": account, "RCLONE_AZUREBLOB_ENV_AUTH": "true"}


def fetch_container(plan: Plan) -> dict:
    """Init container: copy the bucket's repository into the pod's model volume."""
    source, env = _fetch_source(plan.storage_uri)
    env = {**env, "HOME": "/tmp", "RCLONE_CONFIG": "/tmp/rclone.conf"}
    return {"name": "fetch-models", "image": FETCH_IMAGE, "imagePullPolicy": "IfNotPresent",
            "args": ["copy", source, MODEL_MOUNT], "env": [{"name": k, "value": v} for k, v in env.items()],
            "envFrom": [{"secretRef": {"name": f"{plan.options.name}-storage", "optional": True}}],
            "securityContext": container_security_context(),
            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
            "volumeMounts": [{"name": "model-repository", "mountPath": MODEL_MOUNT},
                             {"name": "tmp", "mountPath": "/tmp"}]}


def model_volume(plan: Plan) -> tuple[dict, dict]:
    """(volume, read-only mount at /models): the claim, or an emptyDir the init container fills."""
    mount = {"name": "model-repository", "mountPath": MODEL_MOUNT, "readOnly": True}
    if plan.pvc_name is None:
        size = f"{-(-fetched_repository_bytes(plan) // 2**20)}Mi"
        return {"name": "model-repository", "emptyDir": {"sizeLimit": size}}, mount
    if plan.pvc_subpath:
        mount["subPath"] = plan.pvc_subpath
    return {"name": "model-repository", "persistentVolumeClaim": {"claimName": plan.pvc_name, "readOnly": True}}, mount


def serve_container(plan: Plan) -> dict:
    """The one container: gsam serve (gateway and supervisor) in front of tritonserver."""
    _, mount = model_volume(plan)
    return {
        "name": "gsam-serve",
        "image": plan.image,
        "imagePullPolicy": "IfNotPresent",
        "command": serve_command(plan),
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "TMPDIR", "value": "/tmp"},
                {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                  {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        # Loading the models may take minutes; liveness and readiness wait for the startup probe.
        "startupProbe": probe(plan, 10, 60),
        "readinessProbe": probe(plan, 10, 3),
        # Longer than readiness: gsam serve's supervisor reloads a dead stub first; a pod that stays unhealthy
        # for 2 minutes is restarted.
        "livenessProbe": probe(plan, 30, 4),
        "resources": resources(plan),
        "securityContext": container_security_context(),
        "volumeMounts": [*scratch_mounts(), mount],
    }


def pod_spec(plan: Plan) -> dict:
    volume, _ = model_volume(plan)
    spec = {"securityContext": pod_security_context(), "automountServiceAccountToken": False,
            "enableServiceLinks": False, "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
            "containers": [serve_container(plan)], "volumes": [*scratch_volumes(plan), volume]}
    if plan.pvc_name is None:
        spec["initContainers"] = [fetch_container(plan)]
    if plan.node_selector:  # the engine's GPU architecture
        spec["nodeSelector"] = plan.node_selector
    return spec
