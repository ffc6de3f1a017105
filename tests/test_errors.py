"""Every user-facing failure in docs/errors.md, through the CLI: one line, non-zero exit, no traceback,
nothing already written damaged. (Dataset-layout, port, Triton and bench errors are tested beside
their features: test_data.py, test_serving.py, test_bench.py, test_export.py.)"""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from gsam.cli import cli


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    return result, errors


def assert_one_line_error(result, errors, fragment):
    assert result.exit_code != 0, result.output
    assert len(errors) == 1, result.output
    assert fragment in errors[0], errors[0]
    assert "Traceback" not in result.output


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((50, 70)) * 255).astype(np.uint8)).save(folder / "gray.png")
    Image.fromarray((rng.random((50, 70, 4)) * 255).astype(np.uint8)).save(folder / "rgba.png")
    Image.fromarray((rng.random((50, 70)) * 65535).astype(np.uint16)).save(folder / "gray16.png")
    return folder


def test_grayscale_rgba_and_16_bit_images_predict_at_native_size(tmp_path, trained_run, images):
    result, _ = run("predict", trained_run, images, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    for name in ("gray", "rgba", "gray16"):
        assert Image.open(tmp_path / "out" / "masks" / f"{name}.png").size == (70, 50)


@pytest.mark.parametrize("content, fragment", [(b"garbage", "cannot read image"), (b"", "cannot read image")])
def test_corrupt_image_at_predict(tmp_path, trained_run, content, fragment):
    (tmp_path / "bad.png").write_bytes(content)
    assert_one_line_error(*run("predict", trained_run, tmp_path / "bad.png", "--out", tmp_path / "o"), "bad.png: " + fragment)


def test_truncated_image_at_predict(tmp_path, trained_run, synth_data):
    source = next((synth_data / "val" / "images").glob("*.png"))
    (tmp_path / "cut.png").write_bytes(source.read_bytes()[:200])
    assert_one_line_error(*run("predict", trained_run, tmp_path / "cut.png", "--out", tmp_path / "o"), "cut.png: cannot read image")


def test_image_below_minimum_size(tmp_path, trained_run):
    Image.fromarray(np.zeros((20, 70, 3), np.uint8)).save(tmp_path / "small.png")
    assert_one_line_error(*run("predict", trained_run, tmp_path / "small.png", "--out", tmp_path / "o"),
                          "small.png: image 20x70 is below the model's minimum side of 32")


def test_empty_and_missing_inputs(tmp_path, trained_run):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(*run("predict", trained_run, tmp_path / "empty", "--out", tmp_path / "o"), "holds no .png")
    assert_one_line_error(*run("predict", trained_run, tmp_path / "nope.png", "--out", tmp_path / "o"), "no such image")


def test_unwritable_output_directories(tmp_path, trained_run, synth_data):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(*run("predict", trained_run, synth_data / "val" / "images", "--out", blocker / "sub"),
                          "cannot create the output folder")
    assert_one_line_error(*run("train", "--data", synth_data, "--out", blocker / "run", "--model", "tiny"),
                          "cannot write the run directory")
    assert_one_line_error(*run("data", "synth", "--out", blocker / "data"), "Not a directory")


def test_truncated_checkpoint_everywhere(tmp_path, trained_run, synth_data):
    cut = tmp_path / "cut.pt"
    cut.write_bytes((trained_run / "best.pt").read_bytes()[:4096])
    for args in (["predict", cut, synth_data / "val" / "images", "--out", tmp_path / "o"],
                 ["eval", cut, "--data", synth_data],
                 ["export", "onnx", cut, "--out", tmp_path / "m.onnx"],
                 ["train", "--data", synth_data, "--out", tmp_path / "r", "--model", "tiny", "--sam-checkpoint", cut]):
        assert_one_line_error(*run(*args), "cut.pt: not a readable PyTorch checkpoint")


def test_checkpoint_of_another_architecture(tmp_path, sam_shaped_checkpoint, synth_data):
    assert_one_line_error(*run("train", "--data", synth_data, "--out", tmp_path / "r", "--model", "tiny",
                               "--sam-checkpoint", sam_shaped_checkpoint, "--quiet"),
                          "a SAM vit_b checkpoint (embed dim 768, 12 blocks) does not fit model tiny")
    assert_one_line_error(*run("predict", sam_shaped_checkpoint, synth_data, "--out", tmp_path / "o"),
                          "pass it to --sam-checkpoint")


def test_gsam_checkpoint_with_a_damaged_config(tmp_path, trained_run, synth_data):
    payload = torch.load(trained_run / "best.pt", weights_only=True)
    payload["config"]["embed_dim"] = 96
    torch.save(payload, tmp_path / "odd.pt")
    assert_one_line_error(*run("eval", tmp_path / "odd.pt", "--data", synth_data), "damaged gsam checkpoint")


def test_training_settings_errors(tmp_path, synth_data):
    base = ["train", "--data", synth_data, "--model", "tiny", "--quiet"]
    if not torch.cuda.is_available():
        assert_one_line_error(*run(*base, "--out", tmp_path / "a", "--device", "cuda"), "no CUDA device")
        assert_one_line_error(*run(*base, "--out", tmp_path / "b", "--amp", "fp16"), "fp16 needs a CUDA device")
    assert_one_line_error(*run(*base, "--out", tmp_path / "c", "--num-classes", "5"), "does not fit the dataset's 3 classes")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("epochs: [1\n")
    assert_one_line_error(*run(*base, "--out", tmp_path / "d", "--config", bad_yaml), "not valid YAML")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("epoks: 3\n")
    assert_one_line_error(*run(*base, "--out", tmp_path / "e", "--config", unknown), "unknown field 'epoks'")
    assert_one_line_error(*run("train", "--resume", tmp_path / "never"), "nothing to resume")


def test_existing_run_is_not_overwritten(tmp_path, trained_run, synth_data):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    before = {p.name: digest(p) for p in copy.iterdir() if p.is_file()}
    assert_one_line_error(*run("train", "--data", synth_data, "--out", copy, "--model", "tiny"), "already holds a run")
    assert {p.name: digest(p) for p in copy.iterdir() if p.is_file()} == before


def test_bad_classes_yaml(tmp_path, synth_data):
    root = tmp_path / "data"
    shutil.copytree(synth_data, root)
    (root / "classes.yaml").write_text("names: background\n")
    assert_one_line_error(*run("data", "check", root), "classes.yaml: field 'names' must be a list")


def test_failed_export_keeps_the_previous_model(tmp_path, trained_run):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous model")
    assert_one_line_error(*run("export", "onnx", trained_run, "--out", target, "--exporter", "torchscript",
                               "--tolerance", "0"), "verification failed")
    assert target.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_tensorrt_without_tensorrt_and_bad_profiles(tmp_path, trained_run):
    onnx_path = tmp_path / "m.onnx"
    assert run("export", "onnx", trained_run, "--out", onnx_path, "--exporter", "torchscript")[0].exit_code == 0
    good = "min=1x3x64x64,opt=1x3x128x128,max=1x3x256x256"
    if __import__("importlib").util.find_spec("tensorrt") is None:
        assert_one_line_error(*run("export", "tensorrt", onnx_path, "--out", tmp_path / "m.plan", "--profile", good),
                              "pip install 'gsam[gpu]'")
    assert_one_line_error(*run("export", "tensorrt", onnx_path, "--out", tmp_path / "m.plan", "--profile",
                               "min=1x3x16x16,opt=1x3x128x128,max=1x3x256x256"), "below the model's minimum side of 32")
    assert_one_line_error(*run("export", "tensorrt", onnx_path, "--out", tmp_path / "m.plan", "--profile",
                               "min=1x3x64x64,opt=1x3x512x512,max=1x3x256x256"), "min <= opt <= max")
    assert not (tmp_path / "m.plan").exists()


def test_debug_flag_shows_the_traceback(tmp_path, trained_run):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    result = CliRunner().invoke(cli, ["--debug", "predict", str(trained_run), str(tmp_path / "bad.png"),
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "Error: " in result.output
    assert "Traceback (most recent call last)" in result.output and "ImageReadError" in result.output
