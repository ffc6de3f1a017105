"""What the user chooses for a Kubernetes deployment, checked before anything is written.

Every check raises GSAMError with the option, the value and what was expected, so the CLI
prints one line. Checks that need the repository (GPU count against instance kinds, the
model names) live in plan.py, beside the facts they compare against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gsam.errors import GSAMError

# RFC 1123 label: what Kubernetes accepts as a Deployment/Service name.
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")
QUANTITY_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")
CPU_PATTERN = re.compile(r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$")
STORAGE_SCHEMES = ("pvc://", "s3://", "gs://", "as://")
AUTOSCALE_METRICS = ("cpu", "queue")
# A label KEY=VALUE: an optional DNS-subdomain prefix, a name of at most 63 characters, a value likewise.
LABEL_PATTERN = re.compile(r"^(?P<key>([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}"
                           r"[A-Za-z0-9])?)=(?P<value>([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?)$")


@dataclass
class K8sOptions:
    """Choices for `gsam triton k8s`; None means "derive from the repository"."""

    replicas: int = 1
    max_replicas: int | None = None  # None: 4 x replicas
    gpus_per_replica: int | None = None  # None: 1 when a loaded model runs on KIND_GPU, else 0
    models: list[str] | None = None  # None: gsam_trt when the repository has it, else gsam_python
    image: str | None = None  # None: gsam-triton:YY.MM-py3-gsamVERSION, built from DIR/image/Dockerfile
    storage_uri: str | None = None  # None: a PersistentVolumeClaim the repository is copied into
    memory: str | None = None  # None: from the served models' largest legal requests (pod_memory.py)
    cpu: str = "1"
    name: str = "gsam"
    namespace: str | None = None
    autoscale: str = "cpu"
    target_cpu_percent: int = 70
    target_queue_us_per_s: int = 200_000
    labels: dict[str, str] = field(default_factory=dict)
    client_label: str = "gsam.io/client=true"  # pods with this label may reach the inference ports
    monitoring_namespace: str = "monitoring"  # the namespace whose pods may scrape the metrics port

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.replicas, int) or self.replicas < 1:
            raise GSAMError(f"--replicas must be an integer >= 1; got {self.replicas!r}")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise GSAMError(f"--max-replicas must be >= --replicas ({self.replicas}); got {self.max_replicas}")
        if self.gpus_per_replica is not None and self.gpus_per_replica < 0:
            raise GSAMError(f"--gpus-per-replica must be >= 0; got {self.gpus_per_replica}")
        if not NAME_PATTERN.match(self.name):
            raise GSAMError(f"--name must be a DNS label (lower-case letters, digits, '-', at most 52 characters); "
                            f"got {self.name!r}")
        if self.namespace is not None and not NAME_PATTERN.match(self.namespace):
            raise GSAMError(f"--namespace must be a DNS label; got {self.namespace!r}")
        if self.models is not None and not self.models:
            raise GSAMError("--triton-model must name at least one model of the repository")
        if self.storage_uri is not None and not self.storage_uri.startswith(STORAGE_SCHEMES):
            raise GSAMError(f"--storage-uri must start with one of {', '.join(STORAGE_SCHEMES)}; "
                            f"got {self.storage_uri!r}")
        if self.storage_uri and self.storage_uri.startswith("pvc://") and \
                not NAME_PATTERN.match(self.storage_uri[len("pvc://"):].split("/", 1)[0]):
            raise GSAMError(f"--storage-uri pvc://CLAIM[/PATH]: CLAIM must be a DNS label; got {self.storage_uri!r}")
        if self.memory is not None and not QUANTITY_PATTERN.match(self.memory):
            raise GSAMError(f"--memory must be a Kubernetes quantity such as 2Gi or 1500Mi; got {self.memory!r}")
        if not CPU_PATTERN.match(self.cpu):
            raise GSAMError(f"--cpu must be a Kubernetes CPU quantity such as 1, 2.5 or 500m; got {self.cpu!r}")
        if self.autoscale not in AUTOSCALE_METRICS:
            raise GSAMError(f"--autoscale must be one of {', '.join(AUTOSCALE_METRICS)}; got {self.autoscale!r}")
        if not 1 <= self.target_cpu_percent <= 100:
            raise GSAMError(f"--target-cpu must be within 1..100 percent; got {self.target_cpu_percent}")
        if self.target_queue_us_per_s < 1:
            raise GSAMError(f"--target-queue-us must be >= 1; got {self.target_queue_us_per_s}")
        if not LABEL_PATTERN.match(self.client_label):
            raise GSAMError(f"--client-label must be a Kubernetes label KEY=VALUE such as gsam.io/client=true; "
                            f"got {self.client_label!r}")
        if not NAME_PATTERN.match(self.monitoring_namespace):
            raise GSAMError(f"--monitoring-namespace must be a DNS label; got {self.monitoring_namespace!r}")
        if self.image is not None:
            from gsam.deploy.container.recipe import parse_image

            if parse_image(self.image).is_stock_triton:
                raise GSAMError(f"--container-image {self.image!r}: NVIDIA's image has neither gsam nor the python models' "
                                "dependencies; build DIR/image/Dockerfile (FROM that image) and pass the result")

    @property
    def client_selector(self) -> dict[str, str]:
        key, value = self.client_label.split("=", 1)
        return {key: value}

    @property
    def effective_max_replicas(self) -> int:
        return self.max_replicas if self.max_replicas is not None else 4 * self.replicas
