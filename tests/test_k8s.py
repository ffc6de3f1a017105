"""`gsam triton k8s`: manifests generated from a real repository, validated offline against the
Kubernetes schemas (kubernetes-validate) and KServe's SDK models; bad options end in one line."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gsam.cli import cli
from gsam.errors import GSAMError
from gsam.export.metadata import read_onnx_facts
from gsam.export.profiles import parse_profile
from gsam.runtime.k8s import K8sOptions, write_manifests
from gsam.runtime.k8s.images import TENSORRT_BY_RELEASE, check_image, release_for_tensorrt
from gsam.runtime.k8s.manifests import GRPC_PORT, HTTP_PORT, KUBERNETES_VERSION, METRICS_PORT, QUEUE_METRIC
from gsam.runtime.k8s.validate import check_inference_service, validate_kubernetes
from gsam.runtime.triton.repository import build_repository
from gsam.runtime.triton.server import TritonServer

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


def test_cpu_repository_manifests_validate_and_carry_probes_ports_resources(cpu_repo, tmp_path):
    out = tmp_path / "deploy"
    result = write_manifests(cpu_repo, out, K8sOptions(replicas=2))
    docs = _load(out)
    assert set(docs) == {"k8s/pvc.yaml", "k8s/deployment.yaml", "k8s/service.yaml", "k8s/hpa.yaml",
                         "kserve/inferenceservice.yaml"}
    for name, doc in docs.items():
        if name.startswith("k8s/"):
            assert doc["metadata"]["annotations"]["gsam.io/kubernetes-schema"] == KUBERNETES_VERSION
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    container = _container(docs)
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": HTTP_PORT, "grpc": GRPC_PORT, "metrics": METRICS_PORT}
    assert {p["name"]: p["port"] for p in docs["k8s/service.yaml"]["spec"]["ports"]} == {
        "http": HTTP_PORT, "grpc": GRPC_PORT, "metrics": METRICS_PORT}
    # CPU-only repository: no GPU asked for, memory derived from the model's footprint
    resources = container["resources"]
    assert "nvidia.com/gpu" not in resources["limits"] and resources["limits"]["memory"] == resources["requests"]["memory"]
    assert resources["requests"]["memory"].endswith("Mi") and result.plan.memory_source == "measured footprint"
    command = " ".join(container["command"])
    assert "--model-repository=/models" in command and "--load-model=gsam_python" in command
    assert "--load-model=gsam_onnx" not in command and "pip install" in command  # stock image lacks onnxruntime
    assert docs["k8s/deployment.yaml"]["spec"]["replicas"] == 2
    hpa = docs["k8s/hpa.yaml"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 8)
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    labels = docs["k8s/deployment.yaml"]["metadata"]["labels"]
    release = labels["gsam.io/triton-release"]
    assert container["image"] == f"nvcr.io/nvidia/tritonserver:{release}-py3"
    assert labels["gsam.io/image-tensorrt"] == TENSORRT_BY_RELEASE[release]
    checked = check_inference_service(docs["kserve/inferenceservice.yaml"])
    assert checked["class"] == "V1beta1InferenceService"
    model = checked["object"]["spec"]["predictor"]["model"]
    assert model["storageUri"] == "pvc://gsam-models/" and model["runtimeVersion"] == f"{release}-py3"
    assert model["modelFormat"] == {"name": "triton"} and "--load-model=gsam_python" in model["args"]


def test_ports_are_the_ones_gsam_serve_uses():
    import inspect

    defaults = inspect.signature(TritonServer.__init__).parameters
    assert (defaults["http_port"].default, defaults["grpc_port"].default) == (HTTP_PORT, GRPC_PORT)


def test_gpu_repository_pins_the_triton_release_of_the_engines_tensorrt(gpu_repo, tmp_path):
    out = tmp_path / "deploy"
    result = write_manifests(gpu_repo, out, K8sOptions(storage_uri="s3://bucket/gsam", autoscale="queue"))
    docs = _load(out)
    assert "k8s/pvc.yaml" not in docs and "prometheus-adapter/values.yaml" in docs
    for name in ("k8s/deployment.yaml", "k8s/service.yaml", "k8s/hpa.yaml"):
        validate_kubernetes(docs[name], KUBERNETES_VERSION)
    container = _container(docs)
    release = release_for_tensorrt(TRT_VERSION)
    assert TENSORRT_BY_RELEASE[release] == TRT_VERSION
    assert container["image"] == f"nvcr.io/nvidia/tritonserver:{release}-py3"
    labels = docs["k8s/deployment.yaml"]["metadata"]["labels"]
    assert labels["gsam.io/engine-tensorrt"] == TRT_VERSION and labels["gsam.io/triton-release"] == release
    assert container["command"][:2] == ["tritonserver", "--model-repository=s3://bucket/gsam"]
    assert "--load-model=gsam_trt" in container["command"] and result.plan.models == ["gsam_trt"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
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
        write_manifests(gpu_repo, tmp_path / "out", K8sOptions(image=f"nvcr.io/nvidia/tritonserver:{other}-py3"))
    sidecar = gpu_repo / "gsam_trt" / "1" / "model.plan.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "tensorrt_version": "9.9.9.9"}))
    with pytest.raises(GSAMError, match="TensorRT 9.9.9.9, which no known Triton release ships"):
        write_manifests(gpu_repo, tmp_path / "out", K8sOptions())


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


def test_image_tags():
    assert check_image("nvcr.io/nvidia/tritonserver:25.10-py3")["release"] == "25.10"
    assert check_image("registry.local:5000/team/gsam-triton:25.10-py3-ort")["release"] == "25.10"
    with pytest.raises(GSAMError):
        check_image("nvcr.io/nvidia/tritonserver:2.51.0")


def test_cli_writes_manifests_and_prints_one_line_errors(cpu_repo, tmp_path):
    runner = CliRunner()
    out = tmp_path / "deploy"
    result = runner.invoke(cli, ["triton", "k8s", str(cpu_repo), "--out", str(out), "--replicas", "3",
                                 "--memory", "3Gi", "--namespace", "vision"])
    assert result.exit_code == 0, result.output
    assert "kubectl apply -f" in result.output
    deployment = yaml.safe_load((out / "k8s" / "deployment.yaml").read_text())
    assert deployment["metadata"]["namespace"] == "vision" and deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "3Gi"
    for args, message in ((["--replicas", "0"], "--replicas must be"), (["--gpus-per-replica", "1"], "KIND_CPU only"),
                          (["--image", "triton:v2"], "--image")):
        result = runner.invoke(cli, ["triton", "k8s", str(cpu_repo), "--out", str(tmp_path / "bad"), *args])
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0]
    assert not (tmp_path / "bad").exists()
