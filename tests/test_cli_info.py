"""`gsam --help`, `--version` and `gsam info` through the real CLI."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from gsam import __version__
from gsam.cli import cli


def test_version_and_help():
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output.strip().endswith(__version__)
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "info" in result.output


def test_info_reports_grid_parameters_and_flops():
    result = CliRunner().invoke(cli, ["info", "--model", "tiny", "--size", "100x260"])
    assert result.exit_code == 0, result.output
    assert "13x33 = 429 tokens" in result.output
    assert "GFLOPs" in result.output and "M trainable" in result.output


def test_info_rejects_bad_sizes_in_one_line():
    runner = CliRunner()
    result = runner.invoke(cli, ["info", "--model", "tiny", "--size", "16x16"])
    assert result.exit_code == 1 and "minimum of 32" in result.output and "Traceback" not in result.output
    result = runner.invoke(cli, ["info", "--size", "12x"])
    assert result.exit_code == 2 and "HEIGHTxWIDTH" in result.output
    result = runner.invoke(cli, ["info", "--model", "vit_x"])
    assert result.exit_code == 1 and "unknown model 'vit_x'" in result.output


@pytest.mark.slow
def test_info_prints_the_lineage_of_every_artifact(tmp_path, trained_run, trained_onnx):
    """run -> ONNX -> Triton model: each artifact names the one it came from, with hashes."""
    from gsam.deploy.triton.repository import build_repository
    from gsam.io import sha256_file

    checkpoint_sha = sha256_file(trained_run / "best.pt")
    runner = CliRunner()
    result = runner.invoke(cli, ["info", str(trained_run)])
    assert result.exit_code == 0, result.output
    assert f"best.pt (sha256 {checkpoint_sha})" in result.output and "tiny, 3 output channel(s)" in result.output

    result = runner.invoke(cli, ["info", str(trained_onnx), "--size", "64x96"])
    assert result.exit_code == 0, result.output
    # the best epoch depends on the run, so only its shape is checked
    assert re.search(rf"exported from  best\.pt \(sha256 {checkpoint_sha}, epoch \d+, val mIoU", result.output)
    assert "token grid" in result.output and "precision      fp32" in result.output

    repo = tmp_path / "repo"
    build_repository(trained_onnx, repo)
    result = runner.invoke(cli, ["info", str(repo / "gsam_python")])
    assert result.exit_code == 0, result.output
    assert f"built from     model.onnx (sha256 {sha256_file(trained_onnx)})" in result.output
    assert f"exported from  best.pt (sha256 {checkpoint_sha}" in result.output
    assert runner.invoke(cli, ["info", str(repo)]).output.count("artifact") == 3  # gsam_python, gsam_image, gsam_onnx


def test_info_on_something_that_is_not_an_artifact(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result = CliRunner().invoke(cli, ["info", str(tmp_path / "notes.txt")])
    assert result.exit_code == 1 and "not a readable PyTorch checkpoint" in result.output
    assert "Traceback" not in result.output


def test_device_option_has_one_spelling_everywhere():
    runner = CliRunner()
    for command in (["train", "--data", "d", "--out", "o"], ["eval", "run", "--data", "d"], ["predict", "a", "b", "--out", "o"]):
        result = runner.invoke(cli, [*command, "--device", "gpu0"])
        assert result.exit_code == 2 and "auto (CUDA when present, else CPU), cpu, cuda or cuda:N" in result.output
