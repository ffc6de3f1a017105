"""`gsam triton k8s`: manifests generated from a real repository, validated offline against the
Kubernetes schemas (kubernetes-validate) and KServe's SDK models; bad options end in one line."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gsam import __version__
from gsam.cli import cli
from gsam.deploy.container.recipe import PACKAGES, default_image, parse_image
from gsam.deploy.container.releases import TENSORRT_BY_RELEASE, check_image, release_for_tensorrt
from gsam.deploy.k8s import K8sOptions, write_manifests
from gsam.deploy.k8s.manifests import GRPC_PORT, HTTP_PORT, KUBERNETES_VERSION, METRICS_PORT, QUEUE_METRIC
from gsam.deploy.k8s.validate import check_inference_service, validate_kubernetes
from gsam.deploy.triton.repository import build_repository
from gsam.errors import GSAMError
from gsam.export.metadata import read_onnx_facts
from gsam.export.profiles import parse_profile
from gsam.runtime.serving.server import TritonServer

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="needs the k8s extra")
# Not imported here: KServe's SDK and tritonclient.grpc cannot share a process (validate.py says why).
pytestmark = pytest.mark.skipif(importlib.util.find_spec("kserve") is None, reason="needs the k8s extra (kserve)")

TRT_VERSION = "10.13.3.9"


@pytest.fixture(scope="module")
def onnx_file(tiny_onnx):
    return tiny_onnx


@pytest.fixture()
def cpu_repo(tmp_path, onnx_file):
    """What the demo writes: gsam_python on KIND_CPU (and gsam_onnx, KIND_GPU, not loaded by default)."""
    repo = tmp_path / "triton_models"
    build_repository(onnx_file, repo)
    return repo


@pytest.fixture()
def gpu_repo(tmp_path, onnx_file):
    """A GPU host's repository: gsam_python on KIND_GPU and gsam_trt with an engine and its sidecar."""
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"engine bytes: only copied here, never deserialized")
    profile = parse_profile("min=1x3x32x32,opt=1x3x256x256,max=1x3x512x512", 32)
    metadata = read_onnx_facts(onnx_file).to_metadata()
    Path(str(engine) + ".json").write_text(json.dumps({"tensorrt_version": TRT_VERSION, "precision": "fp32",
                                                       "profiles": [profile.to_dict()], "metadata": metadata}))
    repo = tmp_path / "gpu_models"
    build_repository(onnx_file, repo, engine=engine, gpu=True)
    return repo


def _load(out: Path) -> dict[str, dict]:
    return {str(p.relative_to(out)): yaml.safe_load(p.read_text()) for p in sorted(out.rglob("*.yaml"))}


def _container(docs):
    return docs["k8s/deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]


def _parses_with_gsams_cli(argv: list[str]) -> None:
    """The pod's command line is one gsam's own CLI accepts (every option exists, every value parses)."""
    import click

    from gsam.cli import cli

    assert argv[0] == "gsam"
    command, args = cli, argv[1:]
    while isinstance(command, click.Group):
        command, args = command.commands[args[0]], args[1:]
    command.make_context(argv[1], args)


def test_cpu_repository_manifests_validate_and_carry_probes_ports_resources(cpu_repo, tmp_path):
    out = tmp_path / "deploy"
    result = write_manifests(cpu_repo, out, K8sOptions(replicas=2))
    docs = _load(out)
    assert set(docs) == {"k8s/pvc.yaml", "k8s/deployment.yaml", "k8s/service.yaml", "k8s/networkpolicy.yaml",
                         "k8s/hpa.yaml", "kserve/inferenceservice.yaml"}
    for name, doc in docs.items():
        if name.startswith("k8s/"):
            assert doc["metadata"]["annotations"]["gsam.io/kubernetes-schema"] == KUBERNETES_VERSION
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    container = _container(docs)
    assert container["command"] == ["gsam", "serve", "--repo", "/models", "--host", "0.0.0.0", "--http-port", "8000",
                                    "--grpc-port", "8001", "--metrics-port", "8002", "--max-connections", "256",
                                    "--max-concurrency", "16", "--max-body-mib", "256", "--allow-host",
                                    "gsam,gsam.*,gsam.*.svc,gsam.*.svc.cluster.local", "--triton-models", "gsam_python"]
    health = ["gsam", "health", "http://127.0.0.1:8000", "--triton-model", "gsam_python", "--repo", "/models"]
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[name]["exec"]["command"] == health, name
    _parses_with_gsams_cli(container["command"])
    _parses_with_gsams_cli(health)
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": HTTP_PORT, "grpc": GRPC_PORT, "metrics": METRICS_PORT}
    assert {p["name"]: p["port"] for p in docs["k8s/service.yaml"]["spec"]["ports"]} == {
        "http": HTTP_PORT, "grpc": GRPC_PORT, "metrics": METRICS_PORT}
    # CPU-only repository: no GPU asked for; CPU and memory requested and limited, memory from the bound
    resources = container["resources"]
    assert resources["limits"] == resources["requests"] and "nvidia.com/gpu" not in resources["limits"]
    assert resources["limits"]["cpu"] == "1" and result.plan.memory_source == "largest legal requests"
    assert resources["limits"]["memory"] == f"{result.plan.bound.mebibytes()}Mi" == result.plan.memory
    assert docs["k8s/deployment.yaml"]["spec"]["replicas"] == 2
    hpa = docs["k8s/hpa.yaml"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 8)
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    labels = docs["k8s/deployment.yaml"]["metadata"]["labels"]
    release = labels["gsam.io/triton-release"]
    assert container["image"] == default_image(release) == f"gsam-triton:{release}-py3-gsam{__version__}"
    assert labels["gsam.io/image-tensorrt"] == TENSORRT_BY_RELEASE[release]
    checked = check_inference_service(docs["kserve/inferenceservice.yaml"])
    assert checked["class"] == "V1beta1InferenceService"
    model = checked["object"]["spec"]["predictor"]["model"]
    assert model["storageUri"] == "pvc://gsam-models/" and model["image"] == container["image"]
    assert "runtimeVersion" not in model  # NVIDIA's image lacks onnxruntime: KServe runs the built one too
    assert model["modelFormat"] == {"name": "triton"} and "--load-model=gsam_python" in model["args"]
    text = "\n".join(p.read_text() for p in (out / "k8s").glob("*.yaml")) + (out / "kserve/inferenceservice.yaml").read_text()
    assert re.search(r"\bpip3?\b", text) is None  # nothing is installed when a pod starts


def test_the_pod_runs_locked_down(cpu_repo, tmp_path):
    out = tmp_path / "deploy"
    result = write_manifests(cpu_repo, out, K8sOptions())
    docs = _load(out)
    pod = docs["k8s/deployment.yaml"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                                      "fsGroupChangePolicy": "OnRootMismatch",
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    security = pod["containers"][0]["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]} and security["privileged"] is False
    # writable: only /tmp and /dev/shm (memory, sized from the bound); the repository is mounted read-only
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == {"/tmp", "/dev/shm", "/models"} and mounts["/models"]["readOnly"] is True
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": result.plan.shm_size}
    assert int(result.plan.shm_size[:-2]) <= int(result.plan.memory[:-2])
    assert volumes["model-repository"]["persistentVolumeClaim"]["readOnly"] is True
    assert pod["terminationGracePeriodSeconds"] == 30
    from gsam.runtime.serving import server

    bound = getattr(server, "SHUTDOWN_BOUND_S", None)  # gsam serve's drain bound, where this gsam has one
    assert bound is None or bound < pod["terminationGracePeriodSeconds"]
    predictor = check_inference_service(docs["kserve/inferenceservice.yaml"])["object"]["spec"]["predictor"]
    assert predictor["securityContext"]["runAsNonRoot"] is True
    assert predictor["model"]["securityContext"]["readOnlyRootFilesystem"] is True
    restricted = [a for a in predictor["model"]["args"] if "restricted" in a]
    assert [a.split("=", 1)[0] for a in restricted] == ["--http-restricted-api", "--grpc-restricted-protocol"]
    assert all(a.split("=", 1)[1].startswith("model-repository,model-config,shared-memory,trace,logging:gsam-admin=")
               for a in restricted)


def test_network_policy_admits_labelled_clients_and_the_monitoring_namespace(cpu_repo, tmp_path):
    out = tmp_path / "deploy"
    write_manifests(cpu_repo, out, K8sOptions(client_label="team.example/segmenter=yes", monitoring_namespace="obs"))
    policy = _load(out)["k8s/networkpolicy.yaml"]
    validate_kubernetes(policy, KUBERNETES_VERSION)
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == _load(out)["k8s/deployment.yaml"]["spec"]["selector"]["matchLabels"]
    assert spec["policyTypes"] == ["Ingress"]
    clients, monitoring = spec["ingress"]
    assert clients["from"] == [{"podSelector": {"matchLabels": {"team.example/segmenter": "yes"}}}]
    assert [p["port"] for p in clients["ports"]] == [HTTP_PORT, GRPC_PORT]
    assert monitoring["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}}}]
    assert [p["port"] for p in monitoring["ports"]] == [METRICS_PORT]


def test_ports_are_the_ones_gsam_serve_uses():
    import inspect

    defaults = inspect.signature(TritonServer.__init__).parameters
    assert (defaults["http_port"].default, defaults["grpc_port"].default) == (HTTP_PORT, GRPC_PORT)


def test_gpu_repository_pins_the_triton_release_of_the_engines_tensorrt(gpu_repo, tmp_path):
    out = tmp_path / "deploy"
    result = write_manifests(gpu_repo, out, K8sOptions(storage_uri="s3://bucket/gsam", autoscale="queue"))
    docs = _load(out)
    assert "k8s/pvc.yaml" not in docs and "prometheus-adapter/values.yaml" in docs
    for name in ("k8s/deployment.yaml", "k8s/service.yaml", "k8s/hpa.yaml", "k8s/networkpolicy.yaml"):
        validate_kubernetes(docs[name], KUBERNETES_VERSION)
    container = _container(docs)
    release = release_for_tensorrt(TRT_VERSION)
    assert TENSORRT_BY_RELEASE[release] == TRT_VERSION
    assert container["image"] == default_image(release) and result.plan.base_image.endswith(f":{release}-py3")
    assert (out / "image" / "Dockerfile").read_text().count(f"FROM nvcr.io/nvidia/tritonserver:{release}-py3\n") == 1
    labels = docs["k8s/deployment.yaml"]["metadata"]["labels"]
    assert labels["gsam.io/engine-tensorrt"] == TRT_VERSION and labels["gsam.io/triton-release"] == release
    assert container["command"][-2:] == ["--triton-models", "gsam_trt"] and result.plan.models == ["gsam_trt"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # gsam serve reads a folder: an init container copies the bucket into the pod's model volume first
    pod = docs["k8s/deployment.yaml"]["spec"]["template"]["spec"]
    fetch = pod["initContainers"][0]
    assert fetch["args"] == ["copy", ":s3:bucket/gsam", "/models"]
    assert fetch["securityContext"]["readOnlyRootFilesystem"] is True
    assert next(v for v in pod["volumes"] if v["name"] == "model-repository")["emptyDir"]["sizeLimit"].endswith("Mi")
    metric = docs["k8s/hpa.yaml"]["spec"]["metrics"][0]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == QUEUE_METRIC
    rule = docs["prometheus-adapter/values.yaml"]["rules"]["custom"][0]
    assert rule["name"]["as"] == QUEUE_METRIC and "nv_inference_queue_duration_us" in rule["seriesQuery"]
    model = docs["kserve/inferenceservice.yaml"]["spec"]["predictor"]["model"]
    assert model["storageUri"] == "s3://bucket/gsam" and model["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_existing_claim_is_mounted_with_its_path(cpu_repo, tmp_path):
    out = tmp_path / "deploy"
    (out / "k8s").mkdir(parents=True)
    (out / "k8s" / "pvc.yaml").write_text("left from an earlier run")
    write_manifests(cpu_repo, out, K8sOptions(storage_uri="pvc://shared/gsam/models"))
    docs = _load(out)
    assert "k8s/pvc.yaml" not in docs  # stale claim from the earlier run removed, kubectl would apply it
    pod = docs["k8s/deployment.yaml"]["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "model-repository")
    assert mount == {"name": "model-repository", "mountPath": "/models", "readOnly": True, "subPath": "gsam/models"}
    claim = next(v for v in pod["volumes"] if v["name"] == "model-repository")["persistentVolumeClaim"]
    assert claim["claimName"] == "shared"
    assert docs["kserve/inferenceservice.yaml"]["spec"]["predictor"]["model"]["storageUri"] == "pvc://shared/gsam/models"


def test_changing_the_repository_changes_the_manifests(cpu_repo, onnx_file, tmp_path):
    """One source of truth: names, repository path and model set follow what `gsam triton build` wrote."""
    out = tmp_path / "deploy"
    first = write_manifests(cpu_repo, out, K8sOptions(models=["gsam_python"]))
    assert first.plan.repo.path == cpu_repo.resolve()
    assert f"from {cpu_repo.resolve()}" in (out / "k8s" / "deployment.yaml").read_text()
    memory_before = _container(_load(out))["resources"]["requests"]["memory"]
    # a model the repository no longer has is refused ...
    shutil.rmtree(cpu_repo / "gsam_onnx")
    with pytest.raises(GSAMError, match="gsam_onnx: not in"):
        write_manifests(cpu_repo, out, K8sOptions(models=["gsam_onnx"]))
    # ... a bigger model raises the memory request ...
    big = cpu_repo / "gsam_python" / "1" / "model.onnx.data"
    big.write_bytes(b"\0" * (300 * 2**20))
    write_manifests(cpu_repo, out, K8sOptions())
    assert int(_container(_load(out))["resources"]["requests"]["memory"][:-2]) > int(memory_before[:-2])
    big.unlink()
    # ... and a repository copied elsewhere is named there
    moved = tmp_path / "elsewhere"
    shutil.copytree(cpu_repo, moved)
    write_manifests(moved, out, K8sOptions())
    assert f"from {moved.resolve()}" in (out / "k8s" / "deployment.yaml").read_text()


@pytest.mark.parametrize("options, message", [
    (dict(replicas=0), "--replicas must be an integer >= 1"),
    (dict(image="nvcr.io/nvidia/tritonserver:latest"), "expected REPOSITORY:YY.MM-py3"),
    (dict(image="tritonserver"), "expected REPOSITORY:YY.MM-py3"),
    (dict(storage_uri="ftp://host/repo"), "--storage-uri must start with"),
    (dict(memory="lots"), "--memory must be a Kubernetes quantity"),
    (dict(name="Bad_Name"), "--name must be a DNS label"),
    (dict(image="nvcr.io/nvidia/tritonserver:25.10-py3"), "NVIDIA's image has neither gsam nor"),
    (dict(image="registry.local/gsam@sha256:abc"), "a digest is @sha256: and 64 lower-case hex digits"),
    (dict(image="registry.local/gsam:25.10-py3@md5:" + "0" * 32), "a digest is @sha256: and 64"),
    (dict(client_label="no-value"), "--client-label must be a Kubernetes label KEY=VALUE"),
    (dict(client_label="bad key=x"), "--client-label must be"),
    (dict(monitoring_namespace="Mon"), "--monitoring-namespace must be a DNS label"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(GSAMError, match=message):
        K8sOptions(**options)


def test_gpus_for_a_cpu_only_repository_are_refused(cpu_repo, tmp_path):
    with pytest.raises(GSAMError, match="run on KIND_CPU only"):
        write_manifests(cpu_repo, tmp_path / "out", K8sOptions(gpus_per_replica=1))
    with pytest.raises(GSAMError, match="gsam_onnx run on KIND_GPU"):
        write_manifests(cpu_repo, tmp_path / "out", K8sOptions(models=["gsam_onnx"], gpus_per_replica=0))
    assert not (tmp_path / "out").exists()


def test_an_image_whose_tensorrt_differs_from_the_engines_is_refused(gpu_repo, tmp_path):
    other = next(r for r, v in TENSORRT_BY_RELEASE.items() if v != TRT_VERSION)
    with pytest.raises(GSAMError, match=f"ships TensorRT {TENSORRT_BY_RELEASE[other]} but gsam_trt was built"):
        write_manifests(gpu_repo, tmp_path / "out", K8sOptions(image=f"registry.local/gsam-triton:{other}-py3"))
    sidecar = gpu_repo / "gsam_trt" / "1" / "model.plan.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "tensorrt_version": "9.9.9.9"}))
    with pytest.raises(GSAMError, match="TensorRT 9.9.9.9, which no known Triton release ships"):
        write_manifests(gpu_repo, tmp_path / "out", K8sOptions())


def test_pods_of_an_engine_land_on_nodes_of_its_gpu_architecture(gpu_repo, tmp_path):
    """The sidecar says which GPU built the engine; the Deployment and the InferenceService select nodes of
    that compute capability by NVIDIA GPU Feature Discovery's labels, and the notes say so."""
    sidecar = gpu_repo / "gsam_trt" / "1" / "model.plan.json"
    without = write_manifests(gpu_repo, tmp_path / "a", K8sOptions())
    assert "nodeSelector" not in _deployment_pod(without, tmp_path / "a")
    gpu = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "gpu": gpu}))
    out = tmp_path / "deploy"
    result = write_manifests(gpu_repo, out, K8sOptions())
    selector = {"nvidia.com/gpu.compute.major": "9", "nvidia.com/gpu.compute.minor": "0"}
    pod = _deployment_pod(result, out)
    assert pod["nodeSelector"] == selector
    docs = _load(out)
    validate_kubernetes(docs["k8s/deployment.yaml"], KUBERNETES_VERSION)
    assert docs["k8s/deployment.yaml"]["metadata"]["labels"]["gsam.io/engine-compute-capability"] == "9.0"
    assert check_inference_service(docs["kserve/inferenceservice.yaml"])["object"]["spec"]["predictor"][
        "nodeSelector"] == selector
    assert result.notes[0] == ("gsam_trt was built on NVIDIA H100 80GB HBM3 (compute capability 9.0) and runs only "
                               "on that GPU architecture: the pods select nodes labelled "
                               "nvidia.com/gpu.compute.major=9, nvidia.com/gpu.compute.minor=0 (NVIDIA GPU Feature "
                               "Discovery sets these labels)")


def _deployment_pod(result, out):
    return _load(out)["k8s/deployment.yaml"]["spec"]["template"]["spec"]


def test_engines_of_two_gpu_architectures_cannot_share_a_pod():
    from gsam.deploy.k8s.plan import engine_gpu_of
    from gsam.deploy.k8s.repository_facts import RepositoryFacts, ServedModel
    from gsam.export.gpu import GpuFacts

    def engine(name, gpu):
        return ServedModel(name, "tensorrt_plan", frozenset({"KIND_GPU"}), 1, 1, "10.13.3.9", gpu=gpu)

    h100, a10 = GpuFacts("NVIDIA H100", "9.0"), GpuFacts("NVIDIA A10", "8.6")
    repo = RepositoryFacts(Path("r"), {"a": engine("a", h100), "b": engine("b", a10), "c": engine("c", None)})
    assert engine_gpu_of(repo, ["a", "c"]) == h100 and engine_gpu_of(repo, ["c"]) is None
    with pytest.raises(GSAMError, match=r"different architectures \(NVIDIA A10 \(compute capability 8.6\), NVIDIA "):
        engine_gpu_of(repo, ["a", "b"])


def test_validation_catches_broken_manifests():
    with pytest.raises(GSAMError, match="invalid for Kubernetes"):
        validate_kubernetes({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                             "spec": {"replicas": "two", "selector": {}, "template": {}}}, KUBERNETES_VERSION)
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "x"},
            "spec": {"predictor": {"model": {"storageUri": "pvc://a/"}}}}
    with pytest.raises(GSAMError, match="model_format"):
        check_inference_service(isvc)
    isvc["spec"]["predictor"]["model"]["modelFormat"] = {"name": "triton"}
    isvc["spec"]["predictor"]["model"]["storageUrl"] = "typo"
    with pytest.raises(GSAMError, match="no field.*storageUrl"):
        check_inference_service(isvc)


DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_image_tags_and_digests():
    assert check_image("nvcr.io/nvidia/tritonserver:25.10-py3")["release"] == "25.10"
    assert check_image("registry.local:5000/team/gsam-triton:25.10-py3-ort")["release"] == "25.10"
    with pytest.raises(GSAMError):
        check_image("nvcr.io/nvidia/tritonserver:2.51.0")
    pinned = parse_image(f"registry.local:5000/team/gsam-triton:25.10-py3@{DIGEST}")
    assert (pinned.repository, pinned.tag, pinned.release, pinned.digest) == (
        "registry.local:5000/team/gsam-triton", "25.10-py3", "25.10", DIGEST)
    bare = parse_image(f"registry.local/gsam-triton@{DIGEST}")
    assert (bare.tag, bare.release, bare.digest) == (None, None, DIGEST)


def test_image_by_digest_is_what_the_pods_run(cpu_repo, gpu_repo, tmp_path):
    image = f"registry.local/gsam-triton:25.09-py3@{DIGEST}"
    result = write_manifests(cpu_repo, tmp_path / "a", K8sOptions(image=image))
    docs = _load(tmp_path / "a")
    assert _container(docs)["image"] == image == docs["kserve/inferenceservice.yaml"]["spec"]["predictor"]["model"]["image"]
    assert result.plan.release == "25.09" and "FROM nvcr.io/nvidia/tritonserver:25.09-py3" in \
        (tmp_path / "a" / "image" / "Dockerfile").read_text()
    assert not any("build and push" in note for note in result.notes)  # a digest names a build already pushed
    # a digest alone: the release is the engine's (the Dockerfile was written FROM it)
    result = write_manifests(gpu_repo, tmp_path / "b", K8sOptions(image=f"registry.local/gsam-triton@{DIGEST}"))
    assert result.plan.release == release_for_tensorrt(TRT_VERSION)
    assert _container(_load(tmp_path / "b"))["image"] == f"registry.local/gsam-triton@{DIGEST}"


def test_cli_writes_manifests_and_prints_one_line_errors(cpu_repo, tmp_path):
    runner = CliRunner()
    out = tmp_path / "deploy"
    result = runner.invoke(cli, ["triton", "k8s", "--repo", str(cpu_repo), "--out", str(out), "--replicas", "3",
                                 "--memory", "3Gi", "--namespace", "vision"])
    assert result.exit_code == 0, result.output
    assert "kubectl apply -f" in result.output
    deployment = yaml.safe_load((out / "k8s" / "deployment.yaml").read_text())
    assert deployment["metadata"]["namespace"] == "vision" and deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "3Gi"
    for args, message in ((["--replicas", "0"], "--replicas must be"), (["--gpus-per-replica", "1"], "KIND_CPU only"),
                          (["--container-image", "triton:v2"], "--container-image")):
        result = runner.invoke(cli, ["triton", "k8s", "--repo", str(cpu_repo), "--out", str(tmp_path / "bad"), *args])
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0]
    assert not (tmp_path / "bad").exists()


def test_the_image_installs_pinned_dependencies_and_gsam_at_build_time(cpu_repo, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "deploy"
    write_manifests(cpu_repo, out, K8sOptions())
    dockerfile = (out / "image" / "Dockerfile").read_text()
    release = _load(out)["k8s/deployment.yaml"]["metadata"]["labels"]["gsam.io/triton-release"]
    assert f"FROM nvcr.io/nvidia/tritonserver:{release}-py3\n" in dockerfile and "USER 1000:1000" in dockerfile
    requirements = [line for line in (out / "image" / "requirements.txt").read_text().splitlines()
                    if line and not line.startswith("#")]
    pinned = {re.split(r"[\[=]", line)[0]: line.split("==")[1].split()[0] for line in requirements}
    assert set(pinned) == set(PACKAGES) and all(re.fullmatch(r"[0-9][0-9a-z.]*", v) for v in pinned.values())
    wheels = list((out / "image").glob("gsam-*.whl"))
    assert [w.name for w in wheels] == [f"gsam-{__version__}-py3-none-any.whl"] and wheels[0].name in dockerfile
    # the wheel is gsam itself: pip installs it (no index, no dependencies) and its `gsam` script runs
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--target", str(target), str(wheels[0])], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (target / "gsam" / "runtime" / "triton_python" / "python_model.py").is_file()
    assert (target / "gsam" / "pixels" / "codec.py").read_bytes() == \
        (Path(__file__).parents[1] / "gsam" / "pixels" / "codec.py").read_bytes()
    ran = subprocess.run([str(target / "bin" / "gsam"), "--version"], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": str(target)})
    assert ran.returncode == 0 and __version__ in ran.stdout, ran.stderr
    again = tmp_path / "again"
    write_manifests(cpu_repo, again, K8sOptions())
    assert (again / "image" / wheels[0].name).read_bytes() == wheels[0].read_bytes()  # same gsam, same wheel


# Imported by gsam's serving code but not from the image's pip packages: the wheel's bundled server (only used when
# no tritonserver is on PATH; the image has one) and Triton's own module inside python-backend stubs.
NOT_FROM_PIP = {"pytriton": "nvidia-pytriton's bundled server", "triton_python_backend_utils": "Triton's"}


def _dependency_closure(requirements: list[str]) -> set[str]:
    """Distributions (normalized names) these requirements pull in, as installed here, extras and markers followed."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            declared = requires(requirement.name) or []
        except PackageNotFoundError:
            continue
        for line in declared:
            nested = Requirement(line)
            if nested.marker is None or any(nested.marker.evaluate({"extra": extra})
                                            for extra in (requirement.extras or {""})):
                pending.append(nested)
    return seen


def _serving_sources() -> list[Path]:
    """gsam serve's and gsam health's modules, and the runtime/serving modules they import."""
    import ast

    root = Path(__file__).parents[1]
    sources = [p for p in (root / "gsam/commands/serve.py", root / "gsam/commands/health.py") if p.is_file()]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            inside = path.parent.name == "serving" and node.level == 1  # `from .limits import` in runtime/serving
            if inside or node.module.startswith("gsam.runtime.serving."):
                candidate = root / "runtime" / "serving" / (node.module.rsplit(".", 1)[-1] + ".py")
                if candidate.is_file() and candidate not in sources:
                    sources.append(candidate)
    return sources


def test_gsam_serve_and_health_need_only_what_the_image_installs(tmp_path):
    """The image installs PACKAGES (and what they require) beside gsam's wheel: every module gsam serve and
    gsam health import, at load or inside a function, is the standard library, gsam, or from those."""
    import ast
    import subprocess
    import sys
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    from gsam.deploy.container.recipe import EXTRAS

    allowed = _dependency_closure([f"{p}{EXTRAS.get(p, '')}" for p in PACKAGES])
    providers = packages_distributions()
    provided = {module for module, dists in providers.items() if {canonicalize_name(d) for d in dists} & allowed}
    assert {"onnxruntime", "numpy", "PIL", "tifffile", "click", "yaml", "tritonclient", "grpc"} <= provided
    sources = _serving_sources()
    assert sources and sources[0].name == "serve.py"
    outside = []
    internal = {f"gsam.runtime.serving.{p.stem}" for p in sources if p.parent.name == "serving"}
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                top = name.split(".")[0]
                if top == "gsam":
                    internal.add(name)
                elif top not in sys.stdlib_module_names and top not in provided and top not in NOT_FROM_PIP:
                    outside.append(f"{path.name}: {name}")
    assert outside == []
    # and at load time, with every other module refused, the CLI and each gsam module they import load
    blocker = (f"import sys\nallowed = {sorted(provided | set(NOT_FROM_PIP))!r}\n"
               "from importlib.machinery import PathFinder\n"
               "class OnlyTheImage(PathFinder):  # what is not in the image is not found (find_spec gives None)\n"
               "    @classmethod\n"
               "    def find_spec(cls, name, path=None, target=None):\n"
               "        top = name.split('.')[0]\n"
               "        if top not in sys.stdlib_module_names and top != 'gsam' and top not in allowed:\n"
               "            return None\n"
               "        return super().find_spec(name, path, target)\n"
               "sys.meta_path[:] = [OnlyTheImage if f is PathFinder else f for f in sys.meta_path]\n"
               f"import importlib\nfor name in {sorted(internal | {'gsam.cli'})!r}:\n"
               "    importlib.import_module(name)\n"
               "from gsam.cli import cli\n"
               "for command in ('serve', 'health'):\n"
               "    if command in cli.commands:\n"
               "        cli.main([command, '--help'], standalone_mode=False)\n")
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "gsam serve" in done.stdout or "serve" in done.stdout


def test_memory_limit_is_computed_from_each_models_request_bound_tile_and_batch(onnx_file, tmp_path):
    from gsam.deploy.k8s.pod_memory import served_memory
    from gsam.deploy.triton.repository import Batching, Tiling

    def plan_for(name, max_pixels, **build):
        build_repository(onnx_file, tmp_path / name, max_pixels=max_pixels, log=lambda s: None, **build)
        return write_manifests(tmp_path / name, tmp_path / f"{name}-out",
                               K8sOptions(models=["gsam_python", "gsam_image"])).plan

    plan = plan_for("tiled", 320 * 320, batching=Batching(max_batch_size=4),
                    tiling=Tiling(tile=256, overlap=32, max_tiled_pixels=2000 * 2000))
    python, image = plan.loads
    assert (python.max_pixels, python.request_pixels, python.images_per_execution) == (320 * 320, 2000 * 2000, 4)
    assert (image.max_pixels, image.request_pixels, image.images_per_execution, image.encoded) == (
        320 * 320, 2000 * 2000, 1, True)
    assert python.cost.measured and 50 < python.cost.per_pixel < 5000 and python.num_classes == 3
    assert plan.bound == served_memory(list(plan.loads), plan.serve_limits)
    assert plan.memory == f"{plan.bound.mebibytes()}Mi"
    # each term follows its bound: a larger request, a larger batch, tiling, all raise the limit
    small = plan_for("small", 320 * 320, batching=Batching(max_batch_size=1))
    large = plan_for("large", 640 * 640, batching=Batching(max_batch_size=1))
    batched = plan_for("batched", 640 * 640, batching=Batching(max_batch_size=4))
    assert small.bound.total < large.bound.total < batched.bound.total < plan.bound.total
    assert small.bound.shm < large.bound.shm < batched.bound.shm
    # the python models' per-pixel cost is what onnxruntime measured for this very file
    per_pixel = large.loads[0].cost.per_pixel
    growth = large.bound.parts["gsam_python largest request"] - small.bound.parts["gsam_python largest request"]
    assert growth >= per_pixel * (640 * 640 - 320 * 320)
    assert write_manifests(tmp_path / "small", tmp_path / "m", K8sOptions(memory="3Gi")).plan.memory == "3Gi"


@pytest.mark.server
@pytest.mark.parametrize("case", ["batch", "tiled"])
def test_the_largest_legal_requests_stay_under_the_memory_limit_gsam_writes(onnx_file, tmp_path, case):
    """The real bundled server: one execution's worth of the largest legal requests (a full batch of the largest
    tensors to gsam_python with the largest PNG to gsam_image; or, tiled, the largest image gsam_image takes),
    and the server's peak (tritonserver + stubs, each at its VmHWM) stays under the pod's limit. The server loads
    what the pod loads (gsam_image's compute model too), and every request must succeed."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from PIL import Image

    from gsam.bench.process_memory import tree_memory_mib
    from gsam.deploy.triton.repository import Batching, Tiling
    from gsam.runtime.backends import load_backend
    from gsam.runtime.serving.model_config import with_compute_models
    from gsam.runtime.serving.server import free_port

    side, batch = (512, 2) if case == "batch" else (192, 1)
    tiling = Tiling(tile=192, overlap=32, max_tiled_pixels=1024 * 1024) if case == "tiled" else Tiling()
    models = ["gsam_python", "gsam_image"] if case == "batch" else ["gsam_image"]
    build_repository(onnx_file, tmp_path / "repo", max_pixels=side * side, batching=Batching(max_batch_size=batch),
                     tiling=tiling, log=lambda s: None)
    limit_mib = int(write_manifests(tmp_path / "repo", tmp_path / "deploy", K8sOptions(models=models)).plan.memory[:-2])

    def tensor(server):
        client = load_backend("triton-grpc", server.grpc_url, model="gsam_python", timeout=600)
        mask = client(np.random.default_rng(0).uniform(0, 255, (1, 3, side, side)).astype(np.float32))["mask"]
        client.close()
        return mask.shape[-2:]

    def encoded(height, width):
        def send(server):
            buffer = io.BytesIO()
            noise = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(noise).save(buffer, format="PNG", compress_level=1)
            client = load_backend("triton-image", server.http_url, model="gsam_image", timeout=600)
            mask = client.segment_encoded(buffer.getvalue())
            client.close()
            return mask.shape[:2]
        return send

    # tiled: the largest square and the widest image (one band of tiles across 32768 columns)
    sends = [tensor] * batch + [encoded(side, side)] if case == "batch" else [encoded(1024, 1024), encoded(32, 32768)]
    shapes = [(side, side)] * (batch + 1) if case == "batch" else [(1024, 1024), (32, 32768)]
    with TritonServer(tmp_path / "repo", with_compute_models(tmp_path / "repo", models), free_port(),
                      free_port()) as server:
        loaded = tree_memory_mib(server.process.pid, "VmHWM")
        with ThreadPoolExecutor(len(sends)) as pool:  # .result() raises here what a sender raised
            answered = [future.result() for future in [pool.submit(send, server) for send in sends]]
        peak = tree_memory_mib(server.process.pid, "VmHWM")
    assert [tuple(shape) for shape in answered] == shapes
    print(f"{case}: server {loaded:.0f} MiB loaded, {peak:.0f} MiB at its peak; pod limit {limit_mib} MiB")
    assert peak - loaded > 10  # the requests ran and cost memory
    assert peak < limit_mib


def test_a_model_without_a_request_bound_asks_for_memory(cpu_repo, tmp_path):
    config = cpu_repo / "gsam_python" / "config.pbtxt"
    text = config.read_text()
    unbounded = re.sub(r'(key: "max_pixels"\s*value \{\s*string_value: )"\d+"', r'\1"0"', text)
    assert unbounded != text
    config.write_text(unbounded)
    with pytest.raises(GSAMError, match="gsam_python: its config sets no max_pixels, so no request is bounded"):
        write_manifests(cpu_repo, tmp_path / "out", K8sOptions())
    assert write_manifests(cpu_repo, tmp_path / "out", K8sOptions(memory="4Gi")).plan.memory == "4Gi"
