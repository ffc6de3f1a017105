"""A newcomer's first hour: defaults that do not surprise, a --config that takes what gsam writes, errors that name the fix."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from gsam import __version__
from gsam.cli import cli
from gsam.train.config import TrainConfig


def test_train_without_a_model_or_weights_says_what_to_pass(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "--sam-checkpoint sam_vit_b_01ec64.pth" in result.output and "--model tiny" in result.output
    assert "https://dl.fbaipublicfiles.com/segment_anything/" in result.output
    assert not (tmp_path / "run").exists()


def test_print_config_writes_the_format_config_reads(tmp_path):
    printed = CliRunner().invoke(cli, ["train", "--data", "DATA", "--out", "RUN", "--model", "tiny", "--crop", "64",
                                       "--epochs", "3", "--print-config"])
    assert printed.exit_code == 0, printed.output
    settings = yaml.safe_load(printed.output)
    assert list(settings) == [f for f in TrainConfig.__dataclass_fields__]
    cfg = TrainConfig.from_dict(settings)
    assert (cfg.model, cfg.crop, cfg.epochs) == ("tiny", (64, 64), 3)
    (tmp_path / "my.yaml").write_text(printed.output)
    again = CliRunner().invoke(cli, ["train", "--config", str(tmp_path / "my.yaml"), "--lr", "0.5", "--print-config"])
    assert yaml.safe_load(again.output) == {**settings, "lr": 0.5}


def test_config_takes_a_runs_own_config_yaml(tmp_path):
    run_config = {"gsam_version": __version__, "model": {"name": "tiny"}, "classes": ["bg", "fg"],
                  "train": TrainConfig(data="DATA", out="runs/old", model="tiny", epochs=7).to_dict()}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(run_config))
    result = CliRunner().invoke(cli, ["train", "--config", str(tmp_path / "config.yaml"), "--out", "runs/new",
                                      "--print-config"])
    assert result.exit_code == 0, result.output
    settings = yaml.safe_load(result.output)
    assert (settings["data"], settings["out"], settings["model"], settings["epochs"]) == ("DATA", "runs/new", "tiny", 7)


def test_info_shows_a_variants_gate_figures(tmp_path):
    from gsam.lineage import Description
    from gsam.model.config import get_config
    from gsam.model.facts import ModelFacts

    facts = ModelFacts(get_config("tiny"), precision="int8").with_extra(
        gate_mask_agreement="0.9931", gate_images="8", gate_unseen_agreement="0.99", gate_reference_miou="0.94",
        gate_variant_miou="0.935", gate_miou_drop="0.5", int8_scheme="tensorrt")
    lines = Description("onnx", tmp_path / "m.int8.onnx", facts).lines()
    gate = next(line for line in lines if line.startswith("export gate"))
    assert "99.31% on 8 image(s)" in gate and "drop 0.50 points" in gate and "int8 scheme tensorrt" in gate
    plain = Description("onnx", tmp_path / "m.onnx", ModelFacts(get_config("tiny"))).lines()
    assert not any(line.startswith("export gate") for line in plain)


# Run in a fresh interpreter where the serve extra's modules cannot be imported (as after a plain
# `pip install gsam`): every command that needs it ends in one line naming the extra.
WITHOUT_SERVE = """
import json, sys
for name in ("tritonclient", "tritonclient.grpc", "tritonclient.http", "tritonclient.grpc.model_config_pb2",
             "pytriton", "aiohttp", "grpc"):
    sys.modules[name] = None
from click.testing import CliRunner
from gsam.cli import cli
out = [CliRunner().invoke(cli, args, prog_name="gsam").output for args in json.loads(sys.argv[1])]
print(json.dumps(out))
"""


def test_commands_that_need_the_serve_extra_name_it_in_one_line(tmp_path, tiny_onnx):
    import json
    import subprocess
    import sys

    repo = tmp_path / "repo"
    built = CliRunner().invoke(cli, ["triton", "build", str(tiny_onnx), "--repo", str(repo)])
    assert built.exit_code == 0, built.output
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    commands = [["serve", "--repo", str(repo)], ["triton", "build", str(tiny_onnx), "--repo", str(tmp_path / "r2")],
                ["triton", "k8s", "--repo", str(repo), "--out", str(tmp_path / "deploy")],
                ["predict", "--backend", "triton-grpc", "--url", "localhost:1", str(image), "--out", str(tmp_path / "o")]]
    done = subprocess.run([sys.executable, "-c", WITHOUT_SERVE, json.dumps(commands)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    for args, output in zip(commands, json.loads(done.stdout)):
        name = "gsam " + " ".join(args[:2] if args[0] == "triton" else args[:1])
        errors = [line for line in output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and output.splitlines()[-1] == errors[0], output
        assert errors[0].startswith(f"Error: {name} needs the 'serve' extra") and "pip install 'gsam[serve]'" in output
        assert "Traceback" not in output


def test_a_variant_is_made_from_the_verified_fp32_file_without_exporting_again(tmp_path, trained_run, trained_onnx,
                                                                                 synth_data):
    from gsam.export.metadata import read_onnx_facts
    from gsam.io import sha256_file

    with_run = tmp_path / "with_run.fp16.onnx"
    result = CliRunner().invoke(cli, ["export", "onnx", str(trained_run), "--onnx", str(trained_onnx), "--out",
                                      str(with_run), "--precision", "fp16"])
    assert result.exit_code == 0, result.output
    assert "without exporting again" in result.output and "the PyTorch model of" in result.output
    assert "exporting" not in result.output.replace("without exporting again", "")
    facts = read_onnx_facts(with_run)
    assert facts.precision == "fp16" and facts.lineage["onnx_sha256"] == sha256_file(trained_onnx)
    alone = tmp_path / "alone.fp16.onnx"
    result = CliRunner().invoke(cli, ["export", "onnx", str(trained_onnx), "--out", str(alone), "--precision", "fp16",
                                      "--calib-data", str(synth_data)])
    assert result.exit_code == 0 and "the fp32 file itself" in result.output, result.output


def test_an_onnx_source_is_refused_where_it_cannot_serve_in_one_line(tmp_path, trained_onnx):
    fp32 = CliRunner().invoke(cli, ["export", "onnx", str(trained_onnx), "--out", str(tmp_path / "again.onnx")])
    assert fp32.exit_code == 1 and "already a gsam ONNX export" in fp32.output and "gsam export tensorrt" in fp32.output
    no_data = CliRunner().invoke(cli, ["export", "onnx", str(trained_onnx), "--out", str(tmp_path / "v.onnx"),
                                       "--precision", "fp16"])
    assert no_data.exit_code == 1 and "pass --calib-data DATA" in no_data.output, no_data.output
    assert list(tmp_path.iterdir()) == []


def test_a_failed_int8_gate_names_the_flag_that_moves_its_bar(tmp_path, trained_onnx, synth_data):
    out = tmp_path / "m.int8.onnx"
    result = CliRunner().invoke(cli, ["export", "onnx", str(trained_onnx), "--out", str(out), "--precision", "int8",
                                      "--calib-data", str(synth_data), "--calib-images", "4", "--min-agreement", "1"])
    assert result.exit_code == 1 and not out.exists(), result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "int8 gate failed (mask agreement" in error[0] and "--min-agreement" in error[0]


def _decoy_folder(tmp_path):
    """A folder holding a `gsam/` package, as the parent of a clone does: importing it fails loudly."""
    (tmp_path / "gsam").mkdir()
    (tmp_path / "gsam" / "__init__.py").write_text("raise ImportError('the gsam/ of the current folder')\n")
    return tmp_path


def test_python_children_never_import_from_the_current_folder(tmp_path, tiny_onnx, monkeypatch):
    import subprocess

    from gsam.child import python_code, python_module
    from gsam.runtime.memory import peak_memory

    folder = _decoy_folder(tmp_path)
    monkeypatch.chdir(folder)
    assert peak_memory(tiny_onnx, 64)["peak"] > 0  # `gsam triton k8s` measures each model this way
    code = subprocess.run(python_code("import gsam; print(gsam.__version__)"), cwd=folder, capture_output=True,
                          text=True, timeout=120, check=False)
    assert code.returncode == 0 and code.stdout.strip() == __version__, code.stderr
    module = subprocess.run(python_module("gsam", "--version"), cwd=folder, capture_output=True, text=True,
                            timeout=120, check=False)
    assert module.returncode == 0 and __version__ in module.stdout, module.stderr


def test_the_kserve_check_runs_from_a_folder_holding_gsam(tmp_path, monkeypatch):
    import importlib.util

    import pytest

    if importlib.util.find_spec("kserve") is None:  # found, not imported: its protobufs clash with tritonclient's
        pytest.skip("KServe's SDK is not installed (the k8s extra)")
    from gsam.deploy.k8s.validate import check_inference_service

    monkeypatch.chdir(_decoy_folder(tmp_path))
    service = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "x"},
               "spec": {"predictor": {}}}
    assert check_inference_service(service)["class"] == "V1beta1InferenceService"


def _dataset_with_a_jpeg_mask(tmp_path, synth_data, disguised: bool):
    """A copy of synth_data whose first train mask is JPEG: as x.jpg, or as JPEG bytes under x.png."""
    import shutil

    import numpy as np
    from PIL import Image

    root = tmp_path / ("disguised" if disguised else "data")
    shutil.copytree(synth_data, root)
    png = min((root / "train" / "masks").glob("*.png"))
    ids = Image.fromarray(np.asarray(Image.open(png)).astype(np.uint8))
    target = png if disguised else png.with_suffix(".jpg")
    png.unlink()
    ids.save(target, format="JPEG", quality=90)
    return root, target


def test_a_jpeg_mask_is_named_as_the_cause_in_data_check_and_in_training(tmp_path, synth_data):
    root, jpeg = _dataset_with_a_jpeg_mask(tmp_path, synth_data, disguised=False)
    for args in (["data", "check", str(root)],
                 ["train", "--data", str(root), "--out", str(tmp_path / "run"), "--model", "tiny", "--epochs", "1",
                  "--workers", "0", "--quiet"]):
        result = CliRunner().invoke(cli, args)
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code == 1 and len(errors) == 1, result.output
        assert f"{jpeg}: mask is a JPEG file" in errors[0] and "PNG" in errors[0]
    root, disguised = _dataset_with_a_jpeg_mask(tmp_path, synth_data, disguised=True)
    result = CliRunner().invoke(cli, ["data", "check", str(root)])
    assert result.exit_code == 1 and f"{disguised}: mask is a JPEG file" in result.output, result.output


def test_an_artifact_of_another_kind_is_named_with_the_commands_that_take_it(tmp_path, tiny_onnx, synth_data):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(image)
    repo = tmp_path / "repo"
    assert CliRunner().invoke(cli, ["triton", "build", str(tiny_onnx), "--repo", str(repo)]).exit_code == 0
    cases = [(["export", "onnx", str(tiny_onnx), "--out", str(tmp_path / "again.onnx")],
              f"{tiny_onnx}: already a gsam ONNX export", "gsam triton build"),
             (["train", "--data", str(synth_data), "--out", str(tmp_path / "run"), "--sam-checkpoint", str(tiny_onnx)],
              "an ONNX model, not a PyTorch checkpoint", "gsam export tensorrt"),
             (["predict", str(repo), str(image), "--out", str(tmp_path / "o")],
              f"{repo}: a Triton model repository, not a run directory", f"gsam serve --repo {repo}"),
             (["predict", str(repo / "gsam_python"), str(image), "--out", str(tmp_path / "o")],
              "a Triton model folder, not a run directory", f"gsam serve --repo {repo}")]
    for args, what, where in cases:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert what in result.output and where in result.output, result.output


def test_a_client_at_the_other_protocols_port_is_told_which_port_it_reached():
    import threading
    from concurrent import futures
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import grpc
    import pytest

    from gsam.errors import GSAMError
    from gsam.runtime.backends import load_backend

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    http_server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    try:
        with pytest.raises(GSAMError, match="answers HTTP, not gRPC: it is an HTTP port"):
            load_backend("triton-grpc", f"127.0.0.1:{http_server.server_address[1]}", timeout=10)
        with pytest.raises(GSAMError, match=r"answers gRPC \(HTTP/2\), not HTTP/1.1: it is a gRPC port"):
            load_backend("triton-http", f"127.0.0.1:{grpc_port}", timeout=10)
    finally:
        http_server.shutdown()
        grpc_server.stop(0)
    from gsam.runtime.backends.ports import wrong_port

    assert wrong_port(f"127.0.0.1:{grpc_port}", "http") is None  # nothing listens there now: not a protocol mix-up
