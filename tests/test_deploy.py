"""`gsam deploy` on a trained run: the folder, its manifest, and a repository the bundled server loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gsam.cli import cli
from gsam.deploy.folder import DeployManifest, deploy, parse_precisions
from gsam.errors import GSAMError


def test_precisions_parse_with_fp32_first_and_reject_unknown_ones():
    assert parse_precisions("int8,fp32") == ["fp32", "int8"]
    assert parse_precisions("fp16") == ["fp32", "fp16"]
    with pytest.raises(GSAMError, match="--precision"):
        parse_precisions("fp8")


def test_an_existing_folder_is_never_overwritten(trained_run, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("mine")
    with pytest.raises(GSAMError, match="not empty"):
        deploy(trained_run, tmp_path / "d", log=lambda s: None)
    assert (tmp_path / "d" / "keep.txt").read_text() == "mine"


@pytest.mark.server
def test_deploy_writes_a_folder_whose_repository_serves_and_whose_hashes_match(trained_run, tmp_path):
    pytest.importorskip("pytriton", reason="needs the serve extra (nvidia-pytriton)")
    from gsam.runtime.backends import load_backend
    from gsam.runtime.serving.server import TritonServer, free_port

    out = tmp_path / "deploy"
    result = CliRunner().invoke(cli, ["deploy", str(trained_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = DeployManifest.read(out)
    assert manifest.verify(out) == []
    paths = {a.path: a for a in manifest.artifacts}
    for needed in ("onnx/model.fp32.onnx", "profiles.txt", "trtexec.sh", "triton_models/gsam_python/config.pbtxt",
                   "triton_models/gsam_image/1/model.py", "triton_models/gsam_image/1/gsam_pixels/codec.py"):
        assert needed in paths, needed
    assert paths["onnx/model.fp32.onnx"].lineage["source_sha256"]
    assert "--minShapes=image:" in (out / "trtexec.sh").read_text()
    assert (out / "profiles.txt").read_text().startswith("min=1x3x")
    assert json.loads((out / "manifest.json").read_text())["precisions"] == ["fp32"]
    (out / "profiles.txt").write_text("changed")
    assert manifest.verify(out) == ["profiles.txt"]
    with TritonServer(out / "triton_models", ["gsam_python", "gsam_image"], free_port(), free_port()) as server:
        local = load_backend("onnxruntime", out / "onnx" / "model.fp32.onnx")
        remote = load_backend("triton-http", server.http_url)
        image = np.random.default_rng(0).uniform(0, 255, (1, 3, 64, 80)).astype(np.float32)
        np.testing.assert_array_equal(remote(image)["mask"], local(image)["mask"])
        remote.close()


@pytest.mark.slow
def test_deploy_with_an_int8_variant_lists_it_in_the_manifest(trained_run, trained_onnx, tmp_path):
    from support.gates import TINY_INT8_GATE

    from gsam.export.metadata import read_onnx_facts

    manifest = deploy(trained_run, tmp_path / "d", precisions=["fp32", "int8"], thresholds=TINY_INT8_GATE,
                      onnx=trained_onnx, log=lambda s: None)
    assert manifest.precisions == ["fp32", "int8"] and manifest.verify(tmp_path / "d") == []
    facts = read_onnx_facts(tmp_path / "d" / "onnx" / "model.int8.onnx")
    assert facts.precision == "int8" and float(facts.extra["gate_mask_agreement"]) >= TINY_INT8_GATE.min_agreement
    assert "--onnx=onnx/model.int8.onnx" in (tmp_path / "d" / "trtexec.sh").read_text()


@pytest.mark.slow
def test_deploy_with_k8s_writes_validated_manifests_listed_in_the_manifest(trained_run, trained_onnx, tmp_path):
    pytest.importorskip("kubernetes_validate", reason="needs the k8s extra")
    out = tmp_path / "deploy"
    result = CliRunner().invoke(cli, ["deploy", str(trained_run), "--onnx", str(trained_onnx), "--out", str(out),
                                      "--k8s", "--replicas", "2"])
    assert result.exit_code == 0, result.output
    manifest = DeployManifest.read(out)
    paths = {a.path for a in manifest.artifacts}
    assert {"k8s/deployment.yaml", "k8s/service.yaml", "kserve/inferenceservice.yaml"} <= paths, sorted(paths)
    assert manifest.verify(out) == []
    text = (out / "k8s" / "deployment.yaml").read_text()
    assert "replicas: 2" in text and str(out / "triton_models") in text and ".deploy-" not in text
    result = CliRunner().invoke(cli, ["deploy", str(trained_run), "--onnx", str(trained_onnx), "--out",
                                      str(tmp_path / "gpu"), "--k8s", "--gpus-per-replica", "1"])
    assert result.exit_code == 1 and "GPU" in result.output and not (tmp_path / "gpu").exists()


def test_deploy_reuses_only_the_fp32_export_of_the_runs_own_checkpoint(trained_run, trained_onnx, tiny_onnx, tmp_path):
    """--onnx skips the export (minutes with dynamo) only for the run's own fp32 export, proven by its lineage."""
    result = CliRunner().invoke(cli, ["deploy", str(trained_run), "--onnx", str(tiny_onnx), "--out",
                                      str(tmp_path / "a")])
    assert result.exit_code == 1 and "not from" in result.output and "export it again" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "a").exists()
    manifest = deploy(trained_run, tmp_path / "b", onnx=trained_onnx, log=lambda s: None)
    assert manifest.verify(tmp_path / "b") == []
    assert (tmp_path / "b" / "onnx" / "model.fp32.onnx").read_bytes() == trained_onnx.read_bytes()
