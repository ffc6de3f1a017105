"""`gsam --help`, `--version` and `gsam info` through the real CLI."""

from __future__ import annotations

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
